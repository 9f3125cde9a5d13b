# Local base images from Debian packages, pushed to the local registry (127.0.0.1:5000/base/NAME).
.PHONY: base-images

base-images: setup ## Build the local base images (debootstrap + Debian packages) and push them locally
	hack/dockerd.sh
	$(CI) tools install postgres_exporter # the postgres-exporter image copies the pinned binary
	hack/registry.sh up
	hack/base-images/build.sh
