//! The Kubernetes version type. Versions are compared numerically, never as strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Kubernetes release, `vMAJOR.MINOR.PATCH`. Parsing accepts an optional leading `v` or `V`;
/// display always carries a lowercase `v`, as the sysinv API does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

/// Why a string is not a Kubernetes version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Kubernetes version {input:?}: {reason} (expected vMAJOR.MINOR.PATCH, e.g. v1.16.2)"
)]
pub struct VersionError {
    pub input: String,
    pub reason: &'static str,
}

impl KubeVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError {
            input: input.to_string(),
            reason,
        };
        let body = input
            .strip_prefix('v')
            .or_else(|| input.strip_prefix('V'))
            .unwrap_or(input);
        if body.is_empty() {
            return Err(err("it is empty"));
        }
        let mut parts = [0u32; 3];
        let mut count = 0;
        for piece in body.split('.') {
            if count == 3 {
                return Err(err("it has more than three components"));
            }
            if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("each component must be a decimal number"));
            }
            if piece.len() > 1 && piece.starts_with('0') {
                return Err(err("a component has a leading zero"));
            }
            parts[count] = piece.parse().map_err(|_| err("a component is too large"))?;
            count += 1;
        }
        if count != 3 {
            return Err(err("it needs exactly three components"));
        }
        Ok(Self::new(parts[0], parts[1], parts[2]))
    }

    /// Minor-version distance `self - other`, as the skew policy counts it (patch ignored).
    pub fn minor_skew(&self, other: &KubeVersion) -> i64 {
        100 * (i64::from(self.major) - i64::from(other.major))
            + (i64::from(self.minor) - i64::from(other.minor))
    }

    /// How many minor versions a kubelet of this version may be older than the API server
    /// (the version skew policy): 3 from kubelet 1.25 on, 2 before.
    pub fn kubelet_max_skew(&self) -> i64 {
        if (self.major, self.minor) >= (1, 25) {
            3
        } else {
            2
        }
    }

    /// Whether a kubelet of this version may run under API servers of `api`: never newer,
    /// never more minors behind than it supports.
    pub fn kubelet_runs_under(&self, api: KubeVersion) -> bool {
        self.major == api.major
            && api.minor_skew(self) >= 0
            && api.minor_skew(self) <= self.kubelet_max_skew()
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for KubeVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl utoipa::PartialSchema for KubeVersion {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[vV]?\d+\.\d+\.\d+$"))
            .examples(["v1.16.2"])
            .into()
    }
}
impl utoipa::ToSchema for KubeVersion {}

impl Serialize for KubeVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_spellings() {
        for s in ["v1.16.2", "1.16.2", "V1.16.2"] {
            assert_eq!(
                KubeVersion::parse(s).unwrap(),
                KubeVersion::new(1, 16, 2),
                "{s}"
            );
        }
        assert_eq!(
            KubeVersion::parse("V1.16.2").unwrap().to_string(),
            "v1.16.2"
        );
    }

    #[test]
    fn rejects_everything_else() {
        let cases = [
            ("", "empty"),
            ("v", "empty"),
            ("vv1.16.2", "decimal"),
            ("v1.16", "three"),
            ("v1.16.2.1", "more than three"),
            ("v1.16.x", "decimal"),
            ("v1..2", "decimal"),
            ("v1.16.2-rc.1", "decimal"),
            (" v1.16.2", "decimal"),
            ("v1.016.2", "leading zero"),
            ("v1.16.99999999999", "too large"),
            ("1.42.2.unknown", "more than three"),
            ("-1.2.3", "decimal"),
        ];
        for (input, reason) in cases {
            let e = KubeVersion::parse(input).unwrap_err();
            assert!(e.reason.contains(reason), "{input:?}: {e}");
            assert!(e.to_string().contains("expected vMAJOR.MINOR.PATCH"));
        }
    }

    #[test]
    fn orders_numerically() {
        let a = KubeVersion::parse("v1.42.3").unwrap();
        let b = KubeVersion::parse("v1.42.11").unwrap();
        assert!(a < b);
        assert!(KubeVersion::parse("v2.0.0").unwrap() > KubeVersion::parse("v1.99.99").unwrap());
    }

    #[test]
    fn skew_matches_the_reference_vectors() {
        let v = |s| KubeVersion::parse(s).unwrap();
        assert_eq!(v("v1.42.3").minor_skew(&v("v1.42.0")), 0);
        assert_eq!(v("v1.43.1").minor_skew(&v("v1.42.0")), 1);
        assert_eq!(v("v1.41.1").minor_skew(&v("v1.42.1")), -1);
        assert_eq!(v("v2.0.0").minor_skew(&v("v1.42.1")), 58);
    }

    #[test]
    fn serde_round_trip() {
        let v: KubeVersion = serde_json::from_str("\"1.16.2\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"v1.16.2\"");
        assert!(serde_json::from_str::<KubeVersion>("\"1.16\"").is_err());
    }
}
