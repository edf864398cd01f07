//! The version skew policy as it bounds each control-plane step, whatever the version
//! metadata allows.

mod common;

use common::{obs, v};
use kup_core::skew::control_plane_step;

struct Case {
    name: &'static str,
    /// `(host, personality, control plane, kubelet)`.
    hosts: &'static [(
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
    )],
    host: &'static str,
    to: &'static str,
    /// The refusal's message, or `None` when the step is allowed.
    refused: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "a patch release",
        hosts: &[
            ("c0", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("c1", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("w0", "worker", None, Some("v1.16.1")),
        ],
        host: "c1",
        to: "v1.16.2",
        refused: None,
    },
    Case {
        name: "the next minor",
        hosts: &[
            ("c0", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("c1", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("w0", "worker", None, Some("v1.15.3")),
        ],
        host: "c1",
        to: "v1.17.0",
        refused: None,
    },
    Case {
        name: "three minors at once",
        hosts: &[
            ("c0", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("c1", "controller", Some("v1.16.1"), Some("v1.16.1")),
        ],
        host: "c1",
        to: "v1.19.0",
        refused: Some(
            "Kubernetes v1.16.1 can not be upgraded to v1.19.0 in one step: the control plane moves one minor version at a time (upgrade to a v1.17 release first)",
        ),
    },
    Case {
        name: "kubelets left two minors behind",
        hosts: &[
            ("c0", "controller", Some("v1.19.0"), Some("v1.16.1")),
            ("c1", "controller", Some("v1.18.0"), Some("v1.16.1")),
        ],
        host: "c1",
        to: "v1.19.0",
        refused: Some(
            "Can not upgrade the control plane on c1 to v1.19.0: the kubelets on c0 (v1.16.1), c1 (v1.16.1) would be more than 2 minor versions behind v1.19.0; upgrade them first",
        ),
    },
    Case {
        name: "the other API server would be two minors behind",
        hosts: &[
            ("c0", "controller", Some("v1.17.0"), Some("v1.17.0")),
            ("c1", "controller", Some("v1.18.0"), Some("v1.17.0")),
        ],
        host: "c1",
        to: "v1.19.0",
        refused: Some(
            "Can not upgrade the control plane on c1 to v1.19.0: the control plane on c0 runs v1.17.0, and API servers must stay within one minor version of each other",
        ),
    },
    Case {
        name: "a worker's kubelet too far behind",
        hosts: &[
            ("c0", "controller", Some("v1.18.2"), Some("v1.18.2")),
            ("w0", "worker", None, Some("v1.16.0")),
        ],
        host: "c0",
        to: "v1.19.0",
        refused: Some(
            "Can not upgrade the control plane on c0 to v1.19.0: the kubelets on w0 (v1.16.0) would be more than 2 minor versions behind v1.19.0; upgrade them first",
        ),
    },
    Case {
        name: "kubelets from 1.25 may be three minors behind",
        hosts: &[
            ("c0", "controller", Some("v1.27.4"), Some("v1.27.4")),
            ("w0", "worker", None, Some("v1.25.9")),
        ],
        host: "c0",
        to: "v1.28.0",
        refused: None,
    },
    Case {
        name: "a kubelet newer than the target",
        hosts: &[
            ("c0", "controller", Some("v1.16.1"), Some("v1.16.1")),
            ("w0", "worker", None, Some("v1.17.0")),
        ],
        host: "c0",
        to: "v1.16.2",
        refused: Some(
            "Can not upgrade the control plane on c0 to v1.16.2: the kubelet on w0 runs v1.17.0, newer than v1.16.2; a kubelet may never be newer than the API server",
        ),
    },
];

#[test]
fn control_plane_steps_follow_the_skew_policy() {
    for case in CASES {
        let o = obs(case.hosts);
        let got = control_plane_step(&o, case.host, v(case.to)).map_err(|r| r.to_string());
        match case.refused {
            None => assert_eq!(got, Ok(()), "{}", case.name),
            Some(msg) => assert_eq!(got, Err(msg.to_string()), "{}", case.name),
        }
    }
}
