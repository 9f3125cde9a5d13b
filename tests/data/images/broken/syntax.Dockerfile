ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUNN echo this instruction does not exist
