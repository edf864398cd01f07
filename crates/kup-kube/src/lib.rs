//! A real Kubernetes cluster built with kubeadm, as a kup [`Driver`](kup_driver::Driver):
//! observation through the API server kept current by watchers (`cache`), the objects turned
//! into kup's types (`convert`), the hosts file that names the hosts and how to reach them
//! (`hosts`), `kubectl drain`'s classification of a node's pods (`drain`, pure) and the host
//! operations done through the API (`ops`: cordon, drain by evictions, uncordon), put
//! together in [`KubeDriver`]. The host steps over SSH come later: until then they are
//! refused.

mod cache;
pub mod convert;
pub mod drain;
mod driver;
pub mod hosts;
mod ops;
mod steps;

pub use driver::{ConnectError, KubeDriver, Settings, client_from_kubeconfig};
pub use hosts::{HostEntry, HostsFile, HostsFileError, SshTarget};
pub use ops::PolicyVersion;
