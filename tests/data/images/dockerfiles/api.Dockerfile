# Two stages, so the test covers stage names in FROM and a build step whose output is copied.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY src/ ./src/
RUN cat src/*.txt > /src/bundle.txt && wc -l /src/bundle.txt

FROM ${BASE_IMAGE}
ARG VCS_REF=unknown
WORKDIR /app
COPY --from=build /src/bundle.txt /app/bundle.txt
RUN echo "${VCS_REF}" > /app/revision
USER 10001:10001
CMD ["cat", "/app/bundle.txt"]
