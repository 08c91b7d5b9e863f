# shellcheck shell=bash
# Dockerfiles (no container engine here: text checks only): multi-stage on Debian 12, slim
# runtime, no tests built, the collector non-root, the runtime libraries each program links.
# Sourced by check_packaging.sh (PKG, fail).

for img in agent collector; do
  f="$PKG/docker/Dockerfile.$img"
  [[ -f "$f" ]] || { fail "docker: Dockerfile.$img missing"; continue; }
  grep -q '^FROM debian:12 AS build' "$f" || fail "docker: $img: no debian:12 build stage"
  [[ $(grep '^FROM ' "$f" | tail -1) == "FROM debian:12-slim" ]] \
    || fail "docker: $img: runtime stage is not debian:12-slim"
  grep -q -- '-DKSPM_BUILD_TESTS=OFF' "$f" || fail "docker: $img: builds the tests"
  [[ -f "$f.dockerignore" ]] || fail "docker: $img: no $f.dockerignore (build/ in the context)"
done
grep -qx 'USER 65532:65532' "$PKG/docker/Dockerfile.collector" \
  || fail "docker: the collector image does not run as uid 65532"
for lib in libgrpc++1.51 libprotobuf32 libsqlite3-0 libspdlog1.10 libcurl4 libprometheus-cpp-core1.0 \
  libcivetweb1; do
  grep -q "$lib" "$PKG/docker/Dockerfile.collector" || fail "docker: collector lacks $lib"
done
for lib in libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 libspdlog1.10 libbpf1 libprometheus-cpp-core1.0 \
  libcivetweb1; do
  grep -q "$lib" "$PKG/docker/Dockerfile.agent" || fail "docker: agent lacks $lib"
done
