//! What `hone package --k8s` is asked for: names, image, replicas, KServe,
//! the measured memory, the autoscaler and the monitoring labels.

#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// Resource name (DNS-1123).
    pub name: String,
    /// An image reference that names its registry ([`check_registry`]).
    pub image: String,
    /// The autoscaler's minimum (the Deployment leaves replicas to it).
    pub replicas: u32,
    pub kserve: bool,
    /// KServe ModelMesh: a multi-model runtime (needs `storage_uri`).
    pub modelmesh: bool,
    /// For KServe: where the storage initializer fetches the repository
    /// from; without it the runtime serves the image's own models.
    pub storage_uri: Option<String>,
    pub memory: Memory,
    pub autoscale: Autoscale,
    /// Extra labels on the ServiceMonitor (kube-prometheus-stack selects
    /// ServiceMonitors by its `release` label).
    pub monitor_labels: Vec<(String, String)>,
    /// A PersistentVolumeClaim holding the repository, mounted read-only at
    /// the image's model path (for an image built with --no-models).
    pub models_claim: Option<String>,
}

/// What the autoscaler scales on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Autoscale {
    /// CPU utilisation: needs only metrics-server.
    #[default]
    Cpu,
    /// Mean queue time per request, through prometheus-adapter.
    QueueTime,
    /// Mean queue time per request, through a KEDA ScaledObject's
    /// Prometheus trigger (KEDA makes the HPA; hone writes none).
    Keda {
        /// The Prometheus KEDA queries.
        prometheus: String,
        /// Scale to zero when idle, waking on this PromQL request rate
        /// (traffic counted before it reaches a pod: an idle model has
        /// none to report its queue).
        wake: Option<String>,
    },
}

/// Memory request and limit in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub request_mib: u64,
    pub limit_mib: u64,
}

impl Memory {
    /// From the peak RSS of a server that loaded the repository: the
    /// request is that plus a quarter (request buffers, allocator slack),
    /// the limit twice the request, because a hot reload holds the old and
    /// the new version at once. Rounded up to 16 MiB, at least 64 MiB.
    pub fn from_peak_rss(bytes: u64) -> Memory {
        let mib = bytes.div_ceil(1 << 20);
        let request = (mib + mib / 4).max(64).div_ceil(16) * 16;
        Memory {
            request_mib: request,
            limit_mib: request * 2,
        }
    }

    pub(super) fn request(&self) -> String {
        format!("{}Mi", self.request_mib)
    }

    pub(super) fn limit(&self) -> String {
        format!("{}Mi", self.limit_mib)
    }
}
