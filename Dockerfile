# rexec: a static binary on a small image, running as a non-root user.
#   docker build -t rexec .
#   docker run -e REXEC_TOKEN=$(openssl rand -hex 32) -p 8910:8910 -v rexec-data:/var/lib/rexec rexec
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/rexec .

# Alpine keeps a shell and the usual tools for the commands rexec runs.
# 3.22 is supported until May 2027: move on before then.
FROM alpine:3.22
# tini is PID 1: it reaps processes that leave their group and get
# reparented to PID 1, which rexec (reaping only its own children) would not.
RUN apk add --no-cache tini \
 && adduser -D -H -u 10001 rexec \
 && install -d -o rexec -g rexec -m 0700 /var/lib/rexec
COPY --from=build /out/rexec /usr/local/bin/rexec
# The run history and output of detached runs (--scripts): keep it on a volume.
VOLUME /var/lib/rexec
# Not root, so a script with the exectab's -u/-g (run as another user)
# fails to start (EPERM): switching user needs a root server. Run the
# container with --user 0 only if scripts must change user, and know that
# every command then starts as root unless its script says otherwise.
USER rexec
WORKDIR /var/lib/rexec
# Listening on every interface needs a token (REXEC_TOKEN) or mutual TLS
# (REXEC_TLS_CERT, REXEC_TLS_KEY, REXEC_TLS_CLIENT_CA: files mounted into
# the container) at run time. Without either rexec refuses to start, by
# design.
ENV REXEC_IP=0.0.0.0 \
    REXEC_PORT=8910 \
    REXEC_DATA_DIR=/var/lib/rexec
EXPOSE 8910
# "rexec health" exits 0 when GET /healthz answers 200 (it needs no token), 1
# otherwise. It asks the address rexec listens on, from REXEC_IP and
# REXEC_PORT as the container runs with them (a wildcard address is asked
# on loopback), over https when REXEC_TLS_CERT is set, without verifying
# the certificate (which names the host, not loopback; the probe carries no
# secret); "|| exit 1" keeps any other failure (a bad flag exits 2) away
# from the exit code Docker reserves.
HEALTHCHECK --interval=30s --timeout=3s \
  CMD ip="${REXEC_IP:-127.0.0.1}"; \
      case "$ip" in 0.0.0.0|"") ip=127.0.0.1 ;; ::|"[::]") ip=::1 ;; esac; \
      case "$ip" in *:*) ip="[${ip#[}"; ip="${ip%]}]" ;; esac; \
      scheme=http; [ -n "$REXEC_TLS_CERT" ] && scheme=https; \
      rexec health --insecure --timeout 2s --url "$scheme://$ip:${REXEC_PORT:-8910}" || exit 1
ENTRYPOINT ["/sbin/tini", "--", "rexec"]
