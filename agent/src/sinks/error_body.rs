//! What of a backend's error answer may reach the agent's log: the start of the body, scrubbed
//! of credentials. Backends echo requests (and their `Authorization` header) in their errors,
//! so the sink's own credential is masked in the body as soon as it arrives
//! ([`mask_credential`]) and every quoted excerpt is scrubbed of anything credential-shaped
//! ([`scrub_credentials`]) and cut short ([`body_excerpt`]).

use bytes::Bytes;
use reqwest::header::HeaderValue;

/// Longest piece of a response body quoted in an error message.
const ERROR_BODY_CHARS: usize = 200;
/// How much of a response body is looked at for an error message: the start that is scrubbed
/// of credentials before its first [`ERROR_BODY_CHARS`] characters are quoted.
const ERROR_BODY_BYTES: usize = 512;
/// What a credential in a quoted body is replaced with.
const SCRUBBED: &str = "[REDACTED]";

/// `": <first characters of the body>"` with credentials scrubbed ([`scrub_credentials`]) and
/// control characters blanked, or `""`. Only the first [`ERROR_BODY_BYTES`] bytes are read.
pub fn body_excerpt(body: &[u8]) -> String {
    let window = &body[..body.len().min(ERROR_BODY_BYTES)];
    let text = String::from_utf8_lossy(window);
    let text = scrub_credentials(text.trim());
    if text.is_empty() {
        return String::new();
    }
    let mut excerpt: String = text
        .chars()
        .take(ERROR_BODY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(ERROR_BODY_CHARS).is_some() || body.len() > window.len() {
        excerpt.push('…');
    }
    format!(": {excerpt}")
}

/// The rules of [`scrub_credentials`], compiled once.
struct CredentialPatterns {
    /// JSON Web Tokens: `eyJ…` base64url segments joined by dots.
    jwt: regex::Regex,
    /// The value of an `Authorization` header or field, after an optional scheme word.
    authorization: regex::Regex,
    /// A token after an authentication scheme word (`Bearer`, `Basic`, …).
    scheme: regex::Regex,
    /// The value of a key naming a secret (`api_key=`, `"token": "…"`, `password:`, …).
    pair: regex::Regex,
}

fn credential_patterns() -> &'static CredentialPatterns {
    static PATTERNS: std::sync::OnceLock<CredentialPatterns> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        // The patterns are literals checked by the tests; none of them can fail to compile.
        #[allow(clippy::expect_used)]
        let re = |pattern: &str| regex::Regex::new(pattern).expect("valid credential pattern");
        CredentialPatterns {
            jwt: re(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)*"),
            authorization: re(
                r#"(?i)((?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:[a-z][a-z0-9-]*\s+)?)[^\s"',;&}\]]+"#,
            ),
            scheme: re(r"(?i)\b(bearer|basic|digest|negotiate|splunk)(\s+)([A-Za-z0-9._~+/=-]{8,})"),
            pair: re(
                r#"(?i)((?:api[-_]?key|apikey|x-api-key|access[-_]?token|auth[-_]?token|refresh[-_]?token|id[-_]?token|private[-_]?token|client[-_]?secret|secret|password|passwd|pwd|token|credentials?|signature|sig)["']?\s*[:=]\s*["']?)[^\s"',;&}\]]+"#,
            ),
        }
    })
}

/// `text` with credentials replaced by `[REDACTED]`: JWTs, `Authorization` values (the scheme
/// word is kept), tokens after `Bearer`/`Basic`/`Splunk`/…, and values of secret-named keys
/// (`api_key=…`, `"password": "…"`). Used on every piece of a backend's answer that is logged.
pub fn scrub_credentials(text: &str) -> String {
    let p = credential_patterns();
    let text = p.jwt.replace_all(text, SCRUBBED);
    let text = p
        .authorization
        .replace_all(&text, format!("${{1}}{SCRUBBED}").as_str());
    // A plain word after a scheme word (`Basic authentication required`) is no credential.
    let text = p.scheme.replace_all(&text, |caps: &regex::Captures<'_>| {
        let token = &caps[3];
        let plain_word = token.bytes().all(|b| b.is_ascii_lowercase())
            || (token.as_bytes()[0].is_ascii_uppercase()
                && token[1..].bytes().all(|b| b.is_ascii_lowercase()));
        if plain_word {
            caps[0].to_owned()
        } else {
            format!("{}{}{SCRUBBED}", &caps[1], &caps[2])
        }
    });
    let text = p
        .pair
        .replace_all(&text, format!("${{1}}{SCRUBBED}").as_str());
    text.into_owned()
}

/// `body` with every occurrence of the credential of `authorization` (its value after the
/// scheme word) masked by `*`s of the same length, so that a structured body (a protobuf
/// `Status`, JSON) still decodes. Credentials shorter than 4 bytes are left alone: masking them
/// would blank ordinary text and hide nothing.
pub fn mask_credential(body: Bytes, authorization: &HeaderValue) -> Bytes {
    let value = authorization.as_bytes();
    let secret = match value.iter().position(|&b| b == b' ') {
        Some(space) => &value[space + 1..],
        None => value,
    };
    if secret.len() < 4 || !body.windows(secret.len()).any(|w| w == secret) {
        return body;
    }
    let mut masked = body.to_vec();
    let mut at = 0;
    while at + secret.len() <= masked.len() {
        if &masked[at..at + secret.len()] == secret {
            masked[at..at + secret.len()].fill(b'*');
            at += secret.len();
        } else {
            at += 1;
        }
    }
    Bytes::from(masked)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule scrubs what it is for and keeps the words around it.
    #[test]
    fn each_rule_scrubs_its_credential() {
        for (text, expected) in [
            ("Bearer abc.DEF-123_xyz", "Bearer [REDACTED]"),
            (
                "authorization=Token abcdefgh12 x",
                "authorization=Token [REDACTED] x",
            ),
            (
                "{\"apiKey\": \"k-12345678\"}",
                "{\"apiKey\": \"[REDACTED]\"}",
            ),
            ("?access_token=zzz&b=1", "?access_token=[REDACTED]&b=1"),
            ("jwt eyJhbGciOi.eyJzdWIi.sig here", "jwt [REDACTED] here"),
            (
                "Basic authentication required",
                "Basic authentication required",
            ),
        ] {
            assert_eq!(scrub_credentials(text), expected, "{text}");
        }
    }
}
