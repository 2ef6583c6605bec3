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
HEALTHCHECK --interval=30s --timeout=3s \
  CMD wget -q -O /dev/null http://127.0.0.1:8910/healthz || exit 1
ENTRYPOINT ["/sbin/tini", "--", "rexec"]
