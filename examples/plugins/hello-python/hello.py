#!/usr/bin/env python3
# A rexec plugin command: JSON-RPC 2.0 on stdin and stdout, one message a
# line; logs go to stderr. Methods take positional or named params.
import json, sys

def hello(name="world"):
    return "hello, " + name

def add(a, b):
    return a + b

METHODS = {"hello": hello, "add": add, "dir": lambda: sorted(METHODS)}

for line in sys.stdin:
    req = json.loads(line)
    if "method" not in req:
        continue  # an answer to a call of ours
    params, reply = req.get("params") or [], {"jsonrpc": "2.0", "id": req.get("id")}
    fn = METHODS.get(req["method"])
    try:
        if fn is None:
            reply["error"] = {"code": -32601, "message": "no method " + req["method"]}
        else:
            reply["result"] = fn(**params) if isinstance(params, dict) else fn(*params)
    except Exception as e:
        print("hello.py:", repr(e), file=sys.stderr, flush=True)
        reply["error"] = {"code": -32000, "message": str(e)}
    if "id" in req:
        print(json.dumps(reply), flush=True)
