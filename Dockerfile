# rexec: a static binary on a small image, running as a non-root user.
#   docker build -t rexec .
#   docker run -e REXEC_TOKEN=$(openssl rand -hex 32) -p 8910:8910 rexec
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/rexec .

# Alpine keeps a shell and the usual tools for the commands rexec runs.
FROM alpine:3.20
# tini is PID 1: it reaps processes that leave their group and get
# reparented to PID 1, which rexec (reaping only its own children) would not.
RUN apk add --no-cache tini \
 && adduser -D -H -u 10001 rexec
COPY --from=build /out/rexec /usr/local/bin/rexec
USER rexec
WORKDIR /tmp
# Listening on every interface needs a token: pass REXEC_TOKEN at run time.
# Without one rexec refuses to start, by design.
ENV REXEC_IP=0.0.0.0 \
    REXEC_PORT=8910
EXPOSE 8910
# "rexec health" exits 0 when GET /healthz answers 200 (it needs no token), 1
# otherwise. The shell form follows REXEC_PORT; "|| exit 1" keeps any other
# failure (a bad flag exits 2) away from the exit code Docker reserves.
HEALTHCHECK --interval=30s --timeout=3s \
  CMD rexec health --timeout 2s --url "http://127.0.0.1:${REXEC_PORT}" || exit 1
ENTRYPOINT ["/sbin/tini", "--", "rexec"]
