//! A real Kubernetes cluster built with kubeadm, as a kup [`Driver`](kup_driver::Driver):
//! observation through the API server kept current by watchers (`cache`), the objects turned
//! into kup's types (`convert`), the hosts file that names the hosts and how to reach them
//! (`hosts`), the versions it may be upgraded to (`catalog`), `kubectl drain`'s classification of a node's pods (`drain`, pure) and the host
//! operations done through the API (`ops`: cordon, drain by evictions, uncordon), and the
//! host steps over SSH (`steps`) with the patches' files they use (`payload`: manifests, and
//! binaries in place of packages), put together in [`KubeDriver`].

mod cache;
mod catalog;
pub mod convert;
pub mod drain;
mod driver;
mod file;
pub mod hosts;
pub mod manifests;
mod ops;
pub mod payload;
mod steps;

pub use catalog::{load_catalog, parse_catalog};
pub use driver::{ConnectError, KubeDriver, Settings, client_from_kubeconfig};
pub use file::FileError;
pub use hosts::{HostEntry, HostsFile, SshTarget};
pub use ops::PolicyVersion;
pub use payload::PatchFiles;
