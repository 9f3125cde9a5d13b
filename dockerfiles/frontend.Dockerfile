# Schedule Tracker SPA (React + Vite) served by unprivileged NGINX on 8080, proxying /api to
# ${BACKEND_URL}. Build context: examples/schedule-tracker/frontend.
ARG BUILD_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=nginxinc/nginx-unprivileged:1.27-alpine

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies first: this layer is reused as long as the lockfile does not change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY index.html vite.config.js ./
COPY src ./src
RUN npm run build

FROM ${RUNTIME_IMAGE}
ARG VCS_REF=unknown
ARG VERSION=dev
ARG BUILD_DATE=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="schedule-tracker-frontend" \
      org.opencontainers.image.description="Schedule Tracker single-page app behind NGINX" \
      org.opencontainers.image.source="https://github.com/schedule-tracker/schedule-tracker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
# The entrypoint renders templates/conf.d/*.template into /tmp/conf.d, which nginx.conf includes:
# nothing outside /tmp is written, so the root filesystem can be read-only.
# NGINX_WORKER_PROCESSES goes into templates/main.d/workers.conf, included by nginx.conf at the top
# level (worker_processes cannot be set anywhere else).
ENV BACKEND_URL=http://backend:8080 \
    NGINX_WORKER_PROCESSES=auto \
    NGINX_ENVSUBST_OUTPUT_DIR=/tmp \
    NGINX_ENVSUBST_FILTER="BACKEND_URL|NGINX_WORKER_PROCESSES"
COPY nginx/nginx.conf /etc/nginx/nginx.conf
COPY nginx/default.conf.template /etc/nginx/templates/conf.d/default.conf.template
COPY nginx/workers.conf.template /etc/nginx/templates/main.d/workers.conf.template
COPY --from=build /src/dist /usr/share/nginx/html
USER 101:101
EXPOSE 8080
CMD ["nginx", "-g", "daemon off;"]
