//! Timestamps in sysinv's wire format: `2020-02-20T16:08:48.854869+00:00`.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serializer};

pub fn format(ts: &Timestamp) -> String {
    let dt = ts.to_zoned(TimeZone::UTC).datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1000
    )
}

pub fn parse(s: &str) -> Result<Timestamp, jiff::Error> {
    s.parse()
}

/// `#[serde(with = "kup_types::time::serde_ts")]`
pub mod serde_ts {
    use super::*;
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "kup_types::time::serde_opt_ts")]`
pub mod serde_opt_ts {
    use super::*;
    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&format(ts)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_sysinv() {
        let ts: jiff::Timestamp = "2020-02-20T16:08:48.854869Z".parse().unwrap();
        assert_eq!(super::format(&ts), "2020-02-20T16:08:48.854869+00:00");
        assert_eq!(super::parse(&super::format(&ts)).unwrap(), ts);
    }
}
