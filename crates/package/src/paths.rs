//! Where things live inside the image, and the user it runs as.

pub const HONE_IN_IMAGE: &str = "/usr/local/bin/hone";
pub const LIB_DIR_IN_IMAGE: &str = "/opt/hone/lib";
pub const MODELS_IN_IMAGE: &str = "/models";
/// HTTP, gRPC and metrics: `hone serve`'s (and Triton's) default ports.
pub const PORTS: [u16; 3] = [8000, 8001, 8002];
/// The image's user and group (distroless's `nonroot`): numeric, because
/// Kubernetes refuses a named user under `runAsNonRoot`.
pub const UID: u32 = 65532;
