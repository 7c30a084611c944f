# One image for every KeychainDB component: `keychain node|coordinator|proxy|operator`.
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The pinned, hash-checked dependency set first (its layer outlives source changes), then the
# project itself without resolving anything again. CI installs the same pins (requirements-test.lock
# is this lock plus the test extras); regenerate both with `./dev lock`.
COPY requirements.lock ./
RUN python -m venv /opt/keychain && /opt/keychain/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY keychain ./keychain
COPY node ./node
COPY coordinator ./coordinator
COPY proxy ./proxy
COPY operator ./operator
RUN /opt/keychain/bin/pip install --no-deps .

FROM python:3.12-slim
# A fixed non-root uid/gid: the pods' securityContext (runAsUser/fsGroup 10001) matches it.
RUN groupadd --system --gid 10001 keychain \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin keychain \
 && mkdir /data && chown 10001:10001 /data
COPY --from=build /opt/keychain /opt/keychain
# The root filesystem is read-only in the pods: never write bytecode; /tmp and /data are volumes.
ENV PATH=/opt/keychain/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
# coordinator gRPC and HTTP admin, node gRPC, proxy HTTP and gRPC
EXPOSE 7000 7080 7100 8080 8081
ENTRYPOINT ["keychain"]
CMD ["--help"]
