# Schedule Tracker API (Spring Boot). Build context: examples/schedule-tracker/backend.
# Base images are build arguments so the pipeline can substitute mirrored or locally built ones.
ARG BUILD_IMAGE=maven:3.9-eclipse-temurin-17
ARG RUNTIME_IMAGE=eclipse-temurin:17-jre

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies first: this layer is reused as long as pom.xml does not change. `resolve` follows
# Maven's own resolution (go-offline would also fetch optional dependencies nothing uses).
COPY pom.xml ./
RUN mvn -B -q -ntp dependency:resolve dependency:resolve-plugins
COPY src ./src
RUN mvn -B -q -ntp -DskipTests package \
 && mv target/app.jar /src/app.jar

FROM ${RUNTIME_IMAGE}
ARG VCS_REF=unknown
ARG VERSION=dev
ARG BUILD_DATE=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="schedule-tracker-backend" \
      org.opencontainers.image.description="Schedule Tracker API: schedules in PostgreSQL, events through RabbitMQ" \
      org.opencontainers.image.source="https://github.com/schedule-tracker/schedule-tracker" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
WORKDIR /app
COPY --from=build --chown=0:0 /src/app.jar /app/app.jar
# Non-root, numeric so Kubernetes can verify runAsNonRoot; only /tmp is written (read-only root fs).
USER 10001:10001
EXPOSE 8080
# "--migrate" as argument runs the Flyway migrations and exits (the migration Job).
ENTRYPOINT ["java", "-XX:MaxRAMPercentage=75", "-XX:+ExitOnOutOfMemoryError", "-Djava.io.tmpdir=/tmp", \
            "-jar", "/app/app.jar"]
