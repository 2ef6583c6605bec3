package webapi_test

import "syscall"

var syscallSetpgid = syscall.SysProcAttr{Setpgid: true}
