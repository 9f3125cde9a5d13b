# Database tools for the chart's migration wait and backup jobs: /wait-for-db.sh, /backup-db.sh.
# Build context: dockerfiles/. The runtime image must provide bash, psql, pg_isready, pg_dump, gzip.
ARG RUNTIME_IMAGE=postgres:17-alpine

FROM ${RUNTIME_IMAGE}
ARG VCS_REF=unknown
ARG VERSION=dev
ARG BUILD_DATE=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="schedule-tracker-dbtools" \
      org.opencontainers.image.description="Wait-for-PostgreSQL and backup scripts" \
      org.opencontainers.image.source="https://github.com/schedule-tracker/schedule-tracker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
USER 0
COPY wait-for-db.sh backup-db.sh /
RUN chmod 0755 /wait-for-db.sh /backup-db.sh \
 && mkdir -p /backups \
 && chown 10001:10001 /backups
USER 10001:10001
WORKDIR /backups
ENTRYPOINT []
CMD ["/wait-for-db.sh"]
