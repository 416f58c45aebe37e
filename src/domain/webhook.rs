//! Webhook endpoints: URLs and the addresses they may reach, event-type patterns, secrets and
//! Standard Webhooks signatures.

use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use super::Invalid;

/// An `http(s)` URL with a host, at most 2,048 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn parsed(&self) -> url::Url {
        // Checked on construction.
        url::Url::parse(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        if value.len() > 2048 {
            return Err(Invalid::new("must be at most 2048 characters"));
        }
        let url = url::Url::parse(value.trim()).map_err(|e| Invalid::new(format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new("must be an http or https URL"));
        }
        if url.host().is_none() {
            return Err(Invalid::new("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new("must not carry credentials; put secrets in the endpoint, not the URL's user part"));
        }
        Ok(Self(url.to_string()))
    }
}

impl From<WebhookUrl> for String {
    fn from(v: WebhookUrl) -> String {
        v.0
    }
}

/// Why an address may not be reached from a webhook, or `None` if it may.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4).map(|_| "an IPv4-mapped internal address");
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64 reaches IPv4 space; vet the embedded address.
                let [a, b] = v6.segments()[6].to_be_bytes();
                let [c, d] = v6.segments()[7].to_be_bytes();
                refused_v4(Ipv4Addr::new(a, b, c, d)).map(|_| "a NAT64 internal address")
            } else {
                None
            }
        }
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("link-local (this includes the cloud metadata address)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("multicast, broadcast or reserved")
    } else {
        None
    }
}

/// Which event types an endpoint receives: `*`, a prefix such as `order.*`, or an exact type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct EventTypePattern(String);

impl EventTypePattern {
    pub fn matches(&self, event_type: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some("") => true,
            Some(prefix) => event_type.starts_with(prefix),
            None => self.0 == event_type,
        }
    }
}

impl TryFrom<String> for EventTypePattern {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Invalid> {
        let exact = value.strip_suffix(".*").unwrap_or(&value);
        if value == "*" || super::event::EventType::try_from(exact.to_owned()).is_ok() {
            Ok(Self(value))
        } else {
            Err(Invalid::new("must be `*`, a prefix such as `order.*`, or an event type such as `order.created`"))
        }
    }
}

impl From<EventTypePattern> for String {
    fn from(v: EventTypePattern) -> String {
        v.0
    }
}

/// An endpoint as read, its settings decoded. Its signing secrets are read apart, opened, only
/// where they are needed (see [`SigningSecrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: WebhookUrl,
    pub event_types: Vec<EventTypePattern>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why it was disabled automatically, if it was.
    pub disabled_reason: Option<String>,
    pub rate_limit_per_second: Option<i32>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// An endpoint's signing secrets, opened: the current one, and a rotated-out one that signs
/// beside it until `previous_until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSecrets {
    pub secret: String,
    pub previous: Option<String>,
    pub previous_until_ms: Option<i64>,
}

impl SigningSecrets {
    /// The rotated-out secret while it still signs at `now`.
    pub fn live_previous(&self, now: i64) -> Option<(&str, i64)> {
        self.previous.as_deref().zip(self.previous_until_ms).filter(|(_, until)| *until > now)
    }

    /// The secrets that sign at `now`.
    pub fn signing(&self, now: i64) -> Vec<&str> {
        std::iter::once(self.secret.as_str()).chain(self.live_previous(now).map(|(s, _)| s)).collect()
    }
}

/// A signing secret, `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The Standard Webhooks signature (`v1,<base64>`) of `id.timestamp.body` under `secret`.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).unwrap_or_default();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_signs_as_published() {
        // From the Standard Webhooks specification's reference libraries.
        let sig = sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let s = new_secret();
        assert_eq!(STANDARD.decode(s.strip_prefix("whsec_").unwrap()).unwrap().len(), 32);
        assert_ne!(s, new_secret());
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_allowed() {
        for refused in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
            "255.255.255.255", "::1", "::", "fd00:ec2::254", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(refused_address(refused.parse().unwrap()).is_some(), "{refused}");
        }
        for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "100.128.0.1", "172.32.0.1"] {
            assert_eq!(refused_address(allowed.parse().unwrap()), None, "{allowed}");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(WebhookUrl::try_from("https://example.com/hooks?x=1".to_owned()).is_ok());
        for bad in ["ftp://example.com", "example.com", "https://user:pw@example.com/", "file:///etc/passwd", "http://"] {
            assert!(WebhookUrl::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_all_prefixes_or_exact_types() {
        let p = |s: &str| EventTypePattern::try_from(s.to_owned()).unwrap();
        assert!(p("*").matches("anything.at_all"));
        assert!(p("order.*").matches("order.created") && !p("order.*").matches("orders.created") && !p("order.*").matches("order"));
        assert!(p("order.created").matches("order.created") && !p("order.created").matches("order.created.v2"));
        for bad in ["", "order*", "*.created", "Order.*", "order.**"] {
            assert!(EventTypePattern::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }
}
