//! The built-in redaction detectors: hand-written byte scanners, each pushing the byte ranges
//! it finds. They check what a regular expression cannot (the Luhn digit of card numbers, the
//! mod-97 check of IBANs) and look at what surrounds a candidate so that timestamps, IP
//! addresses, versions and order numbers are left alone.

use std::ops::Range;

/// Which detector found a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Found {
    Card,
    Iban,
    Email,
    Phone,
    Token,
    Jwt,
}

/// What a prescan of the text saw: each detector runs only when the shape it looks for is
/// present, so clean text — timestamps, durations, ids and all — costs one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Triggers {
    /// 13 or more digits in a row, or in groups joined by one space or dash.
    pub card: bool,
    /// Two letters at a word start followed by two digits.
    pub iban: bool,
    /// An `@`.
    pub email: bool,
    /// `+` and a digit at a word start; three digits, a separator and four digits; or a run
    /// of two or more digits starting `0` and a non-zero digit where a number may start.
    pub phone: bool,
    /// `bearer` or `authorization`, any case.
    pub token: bool,
    /// `eyJ`.
    pub jwt: bool,
}

/// Bytes the prescan looks at (1): digits, `b` (`bearer`'s first letter), `z` (the rarest letter
/// of `authorization`: its first, `a`, is the commonest of English text, and each byte looked
/// at costs a stop), `eyJ`'s `J`, `@` and `+`. Every other byte (0) needs nothing but this
/// lookup.
const LOOKED_AT: [u8; 256] = {
    let mut looked_at = [0; 256];
    let mut d = b'0';
    while d <= b'9' {
        looked_at[d as usize] = 1;
        d += 1;
    }
    let mut k = 0;
    let others = b"bBzZJ@+";
    while k < others.len() {
        looked_at[others[k] as usize] = 1;
        k += 1;
    }
    looked_at
};

/// One pass over the text looking for what the detectors need.
pub fn prescan(bytes: &[u8]) -> Triggers {
    let mut t = Triggers::default();
    let n = bytes.len();
    // The previous run of digits: where it ended and how long it was.
    let mut last_run: Option<(usize, usize)> = None;
    let mut chain = 0;
    let mut i = 0;
    loop {
        // Most bytes need nothing but a table lookup: they are skipped here, one at a time and,
        // in a longer stretch, eight at a time while none of the eight matters (eight
        // independent lookups, no branch between them). Only the bytes a detector looks at
        // are handled below, by plain branches, most frequent (digits) first.
        while i < n && LOOKED_AT[usize::from(bytes[i])] == 0 {
            i += 1;
            while let Some(chunk) = bytes.get(i..i + 8) {
                if chunk
                    .iter()
                    .fold(0, |seen, &b| seen | LOOKED_AT[usize::from(b)])
                    != 0
                {
                    break;
                }
                i += 8;
            }
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        if b.is_ascii_digit() {
            let start = i;
            i = digits_end(bytes, i);
            let len = i - start;
            let gap = match last_run {
                Some((end, _)) => start - end,
                None => usize::MAX,
            };
            chain = if gap == 1 && matches!(bytes[start - 1], b' ' | b'-') {
                chain + len
            } else {
                len
            };
            t.card |= chain >= 13;
            if !t.phone && len >= 2 {
                // The last group of a North American number, or the trunk-prefixed first
                // group of a national one — which may have four digits too (`0171 …`).
                let north_american = len == 4
                    && matches!(last_run, Some((_, 3)))
                    && ((gap == 1 && matches!(bytes[start - 1], b' ' | b'-' | b'.'))
                        || (gap == 2 && &bytes[start - 2..start] == b") "));
                let national =
                    b == b'0' && bytes[start + 1] != b'0' && phone_may_start(bytes, start);
                t.phone = north_american || national;
            }
            if !t.iban && len >= 2 && start >= 2 {
                t.iban = bytes[start - 1].is_ascii_alphabetic()
                    && bytes[start - 2].is_ascii_alphabetic()
                    && !(start >= 3 && is_word_byte(bytes[start - 3]));
            }
            last_run = Some((i, len));
            continue;
        }
        if b == b'@' {
            t.email = true;
        } else if b == b'+' {
            t.phone |= bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !before(bytes, i).is_some_and(is_word_byte);
        } else {
            // `b` at a word start, `authorization`'s `z` or `J`.
            match b {
                b'b' | b'B' => t.token |= word_start(bytes, i) && word_at(bytes, i, b"bearer"),
                b'z' | b'Z' => {
                    // `authori` comes before the `z`.
                    t.token |= i.checked_sub(7).is_some_and(|at| {
                        word_start(bytes, at) && word_at(bytes, at, b"authorization")
                    });
                }
                _ => {}
            }
            if b == b'J' {
                t.jwt |= i >= 2 && &bytes[i - 2..i] == b"ey";
            }
        }
        i += 1;
    }
    t
}

/// Whether `word` (lower-case) is at `at`, in any case.
fn word_at(bytes: &[u8], at: usize, word: &[u8]) -> bool {
    bytes
        .get(at..at + word.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(word))
}

/// Whether no letter or digit comes before `at`.
fn word_start(bytes: &[u8], at: usize) -> bool {
    !before(bytes, at).is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn before(bytes: &[u8], at: usize) -> Option<u8> {
    at.checked_sub(1).map(|i| bytes[i])
}

/// Digits of `groups` (each a range of digits in `bytes`) pass the Luhn check.
fn luhn(bytes: &[u8], groups: &[Range<usize>]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for group in groups.iter().rev() {
        for &b in bytes[group.clone()].iter().rev() {
            let mut d = u32::from(b - b'0');
            if double {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
            double = !double;
        }
    }
    sum % 10 == 0
}

/// End of the run of ASCII digits starting at `at`.
fn digits_end(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at].is_ascii_digit() {
        at += 1;
    }
    at
}

/// Whether a number ending at `end` ends there: no letter, digit or decimal part follows.
fn number_ends(bytes: &[u8], end: usize) -> bool {
    match bytes.get(end) {
        None => true,
        Some(&b) if is_word_byte(b) => false,
        Some(b'.' | b',' | b':' | b'-' | b'/') => {
            !bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
        }
        Some(_) => true,
    }
}

/// Payment card numbers: 13–19 digits starting with 2–6 (the issuer ranges in use), written
/// together or in groups of at least three separated by one consistent space or dash, and
/// passing the Luhn check.
pub fn cards(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    const MAX_GROUPS: usize = 8;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let first_end = digits_end(bytes, i);
        let left_ok =
            !matches!(before(bytes, i), Some(b) if is_word_byte(b) || b == b'.' || b == b',');
        if !left_ok || !(b'2'..=b'6').contains(&bytes[i]) {
            i = first_end;
            continue;
        }
        // Collect the groups of a spaced or dashed number.
        let mut groups: [Range<usize>; MAX_GROUPS] = std::array::from_fn(|_| 0..0);
        groups[0] = i..first_end;
        let mut count = 1;
        let mut separator = None;
        let mut end = first_end;
        while count < MAX_GROUPS && end + 1 < bytes.len() {
            let sep = bytes[end];
            if !(sep == b' ' || sep == b'-') || separator.is_some_and(|s| s != sep) {
                break;
            }
            if !bytes[end + 1].is_ascii_digit() {
                break;
            }
            let next_end = digits_end(bytes, end + 1);
            groups[count] = end + 1..next_end;
            separator = Some(sep);
            count += 1;
            end = next_end;
        }
        // The longest run of whole groups that is a card number.
        let mut matched = None;
        let mut digits = 0;
        for (k, group) in groups[..count].iter().enumerate() {
            if k > 0 && (group.len() < 3 || groups[0].len() < 3) {
                break;
            }
            digits += group.len();
            if digits > 19 {
                break;
            }
            // A card number may be followed by an expiry (`/12`, `-12`), not by a decimal part.
            let ends = k + 1 < count
                || match bytes.get(group.end) {
                    None => true,
                    Some(&b) if is_word_byte(b) => false,
                    Some(b'.' | b',') => !bytes.get(group.end + 1).is_some_and(u8::is_ascii_digit),
                    Some(_) => true,
                };
            if (13..=19).contains(&digits) && ends && luhn(bytes, &groups[..=k]) {
                matched = Some(group.end);
            }
        }
        match matched {
            Some(end) => {
                out.push((i..end, Found::Card));
                i = end;
            }
            None => i = first_end,
        }
    }
}

/// IBAN lengths by country (SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
    (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22),
    (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27), (b"DK", 18), (b"DO", 28), (b"EE", 20),
    (b"EG", 29), (b"ES", 24), (b"FI", 18), (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22),
    (b"GE", 22), (b"GI", 23), (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HN", 28), (b"HR", 21),
    (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30),
    (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20), (b"LU", 20),
    (b"LV", 21), (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22), (b"MK", 19), (b"MN", 20),
    (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NI", 28), (b"NL", 18), (b"NO", 15), (b"OM", 23),
    (b"PK", 24), (b"PL", 28), (b"PS", 29), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33),
    (b"SA", 24), (b"SC", 31), (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27),
    (b"SO", 23), (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29),
    (b"VA", 22), (b"VG", 24), (b"XK", 20), (b"YE", 30),
];

fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(code, _)| **code == country)
        .map(|(_, len)| *len)
}

/// The ISO 13616 check: the IBAN with its first four characters moved to the end, letters as
/// 10–35, is 1 modulo 97.
fn iban_checks(iban: &[u8]) -> bool {
    let mut remainder = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        remainder = if c.is_ascii_digit() {
            (remainder * 10 + u32::from(c - b'0')) % 97
        } else {
            (remainder * 100 + u32::from(c - b'A') + 10) % 97
        };
    }
    remainder == 1
}

/// IBANs: a known country code, two check digits and the country's length of letters and
/// digits, written together or in groups of four, passing the mod-97 check.
pub fn ibans(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    let mut i = 0;
    while i + 15 <= bytes.len() {
        let candidate = bytes[i].is_ascii_alphabetic()
            && bytes[i + 1].is_ascii_alphabetic()
            && bytes[i + 2].is_ascii_digit()
            && bytes[i + 3].is_ascii_digit()
            && !before(bytes, i).is_some_and(is_word_byte);
        let length = candidate
            .then(|| {
                iban_length([
                    bytes[i].to_ascii_uppercase(),
                    bytes[i + 1].to_ascii_uppercase(),
                ])
            })
            .flatten();
        let Some(length) = length else {
            i += 1;
            continue;
        };
        let mut iban = [0u8; 34];
        let mut count = 0;
        let mut j = i;
        while count < length && j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_alphanumeric() {
                iban[count] = b.to_ascii_uppercase();
                count += 1;
                j += 1;
            } else if b == b' '
                && count % 4 == 0
                && bytes.get(j + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                j += 1;
            } else {
                break;
            }
        }
        if count == length
            && !bytes.get(j).is_some_and(|&b| is_word_byte(b))
            && iban_checks(&iban[..length])
        {
            out.push((i..j, Found::Iban));
            i = j;
        } else {
            i += 1;
        }
    }
}

fn is_local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// E-mail addresses: `local@domain.tld` with a top-level domain of two or more letters.
pub fn emails(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    let mut searched = 0;
    while let Some(offset) = bytes[searched..].iter().position(|&b| b == b'@') {
        let at = searched + offset;
        searched = at + 1;
        let mut start = at;
        while start > 0 && is_local_part_byte(bytes[start - 1]) {
            start -= 1;
        }
        while start < at && bytes[start] == b'.' {
            start += 1;
        }
        if start == at {
            continue;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_byte(bytes[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &bytes[at + 1..end];
        let Some(last_dot) = domain.iter().rposition(|&b| b == b'.') else {
            continue;
        };
        let tld = &domain[last_dot + 1..];
        let labels_ok = domain
            .split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label[0].is_ascii_alphanumeric());
        if tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && labels_ok {
            out.push((start..end, Found::Email));
            searched = end;
        }
    }
}

/// Whether a phone number written with digits first may start at `at`: at the start, after a
/// blank or opening punctuation, or after a word and a colon (`tel:`).
fn phone_may_start(bytes: &[u8], at: usize) -> bool {
    match before(bytes, at) {
        None => true,
        Some(b) if b.is_ascii_whitespace() => true,
        Some(b'(' | b'[' | b'{' | b'"' | b'\'' | b'=' | b';' | b'<' | b'>') => true,
        Some(b':') => at >= 2 && bytes[at - 2].is_ascii_alphabetic(),
        Some(_) => false,
    }
}

/// An international number from `+` at `at`: 8–15 digits with single spaces, dashes, dots or
/// parentheses between them. Returns its end.
fn international_phone(bytes: &[u8], at: usize) -> Option<usize> {
    let mut j = at + 1;
    let mut digits = 0;
    let mut last_digit_end = at;
    let mut open_paren = false;
    while j < bytes.len() {
        let b = bytes[j];
        if b.is_ascii_digit() {
            digits += 1;
            j += 1;
            last_digit_end = j;
        } else if matches!(b, b' ' | b'-' | b'.')
            && last_digit_end == j
            && bytes
                .get(j + 1)
                .is_some_and(|&n| n.is_ascii_digit() || n == b'(')
        {
            j += 1;
        } else if b == b'(' && !open_paren && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
            open_paren = true;
            j += 1;
        } else if b == b')' && open_paren && last_digit_end == j {
            open_paren = false;
            j += 1;
            last_digit_end = j;
            if bytes.get(j) == Some(&b' ') && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
        } else {
            break;
        }
    }
    ((8..=15).contains(&digits) && number_ends(bytes, last_digit_end)).then_some(last_digit_end)
}

/// Exactly `n` digits at `at`, not followed by another digit.
fn exact_digits(bytes: &[u8], at: usize, n: usize) -> bool {
    digits_end(bytes, at) == at + n
}

/// A North American number at `at`: `(ddd) ddd-dddd`, `ddd-ddd-dddd`, `ddd.ddd.dddd` or
/// `ddd ddd dddd` (one separator throughout), area code starting with 2–9.
fn north_american_phone(bytes: &[u8], at: usize) -> Option<usize> {
    let (mut j, separator) = if bytes[at] == b'(' {
        if !exact_digits(bytes, at + 1, 3) || bytes.get(at + 4) != Some(&b')') {
            return None;
        }
        let mut j = at + 5;
        if matches!(bytes.get(j), Some(b' ' | b'-')) {
            j += 1;
        }
        (j, None)
    } else {
        if !exact_digits(bytes, at, 3) {
            return None;
        }
        let sep = *bytes.get(at + 3)?;
        if !matches!(sep, b'-' | b'.' | b' ') {
            return None;
        }
        (at + 4, Some(sep))
    };
    let area_first = if bytes[at] == b'(' {
        bytes[at + 1]
    } else {
        bytes[at]
    };
    if !(b'2'..=b'9').contains(&area_first) || !exact_digits(bytes, j, 3) {
        return None;
    }
    j += 3;
    let sep = *bytes.get(j)?;
    let sep_ok = match separator {
        Some(s) => sep == s,
        None => matches!(sep, b'-' | b'.' | b' '),
    };
    if !sep_ok || !exact_digits(bytes, j + 1, 4) {
        return None;
    }
    let end = j + 5;
    number_ends(bytes, end).then_some(end)
}

/// A national number with a trunk prefix at `at`: `0` and a non-zero digit, then groups of
/// 2–8 digits with one consistent space, dash or slash, 10–12 digits in all
/// (`030 12345678`, `06 12 34 56 78`, `020 7946 0958`).
fn national_phone(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes[at] != b'0' || !bytes.get(at + 1).is_some_and(|b| (b'1'..=b'9').contains(b)) {
        return None;
    }
    let first_end = digits_end(bytes, at);
    if !(2..=5).contains(&(first_end - at)) {
        return None;
    }
    let mut digits = first_end - at;
    let mut end = first_end;
    let mut separator = None;
    let mut groups = 1;
    while end + 1 < bytes.len() {
        let sep = bytes[end];
        if !matches!(sep, b' ' | b'-' | b'/') || separator.is_some_and(|s| s != sep) {
            break;
        }
        if !bytes[end + 1].is_ascii_digit() {
            break;
        }
        let next_end = digits_end(bytes, end + 1);
        if !(2..=8).contains(&(next_end - end - 1)) {
            return None;
        }
        separator = Some(sep);
        digits += next_end - end - 1;
        groups += 1;
        end = next_end;
    }
    (groups >= 2 && (10..=12).contains(&digits) && number_ends(bytes, end)).then_some(end)
}

/// Phone numbers: international (`+` and 8–15 digits), North American and national formats
/// with a trunk prefix. Bare digit runs are left alone: they are far more often ids, counters
/// and epoch timestamps than phone numbers.
pub fn phones(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let found = if b == b'+' {
            if !before(bytes, i).is_some_and(is_word_byte)
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            {
                international_phone(bytes, i)
            } else {
                None
            }
        } else if (b == b'(' || b.is_ascii_digit()) && phone_may_start(bytes, i) {
            north_american_phone(bytes, i).or_else(|| national_phone(bytes, i))
        } else {
            None
        };
        match found {
            Some(end) => {
                out.push((i..end, Found::Phone));
                i = end;
            }
            None if b.is_ascii_digit() => i = digits_end(bytes, i),
            None => i += 1,
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// A credential: a token of at least 8 characters that is not a plain word.
fn credential(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at;
    while end < bytes.len() && is_token_byte(bytes[end]) {
        end += 1;
    }
    let token = &bytes[at..end];
    let plain_word = token.first().is_some_and(u8::is_ascii_alphabetic)
        && token[1..].iter().all(u8::is_ascii_lowercase);
    (token.len() >= 8 && !plain_word).then_some(end)
}

/// Bearer tokens (`Bearer <token>`) and the credentials of `Authorization` headers and fields
/// (`Authorization: Basic …`, `"authorization": "…"`). The scheme word is kept; the
/// credential is replaced.
pub fn tokens(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    let mut i = 0;
    while i < bytes.len() {
        let lower = bytes[i] | 0x20;
        let word_start = !before(bytes, i).is_some_and(|b| b.is_ascii_alphanumeric());
        if word_start && lower == b'b' && word_at(bytes, i, b"bearer") {
            let mut j = i + 6;
            let spaces = j;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if j > spaces {
                if let Some(end) = credential(bytes, j) {
                    out.push((j..end, Found::Token));
                    i = end;
                    continue;
                }
            }
            i += 6;
        } else if word_start && lower == b'a' && word_at(bytes, i, b"authorization") {
            let mut j = i + 13;
            if matches!(bytes.get(j), Some(b'"' | b'\'')) {
                j += 1;
            }
            while bytes.get(j) == Some(&b' ') {
                j += 1;
            }
            if !matches!(bytes.get(j), Some(b':' | b'=')) {
                i += 13;
                continue;
            }
            j += 1;
            while matches!(bytes.get(j), Some(b' ' | b'"' | b'\'')) {
                j += 1;
            }
            // Keep a scheme word (`Basic`, `Bearer`, `Token`) followed by a space.
            let mut scheme_end = j;
            while scheme_end < bytes.len() && bytes[scheme_end].is_ascii_alphabetic() {
                scheme_end += 1;
            }
            if scheme_end > j && bytes.get(scheme_end) == Some(&b' ') {
                j = scheme_end + 1;
                while bytes.get(j) == Some(&b' ') {
                    j += 1;
                }
            }
            let mut end = j;
            while end < bytes.len()
                && !bytes[end].is_ascii_whitespace()
                && !matches!(bytes[end], b'"' | b'\'' | b',' | b';' | b'&' | b'}' | b')')
            {
                end += 1;
            }
            if end > j {
                out.push((j..end, Found::Token));
                i = end;
            } else {
                i += 13;
            }
        } else {
            i += 1;
        }
    }
}

fn is_base64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// JSON Web Tokens (and JWE): base64url segments separated by dots, the first starting
/// `eyJ` (a base64 `{"`), three to five segments.
pub fn jwts(bytes: &[u8], out: &mut Vec<(Range<usize>, Found)>) {
    let segment_end = |mut at: usize| {
        while at < bytes.len() && is_base64url_byte(bytes[at]) {
            at += 1;
        }
        at
    };
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] != b"eyJ" || before(bytes, i).is_some_and(is_base64url_byte) {
            i += 1;
            continue;
        }
        let header_end = segment_end(i);
        if header_end - i < 10 || bytes.get(header_end) != Some(&b'.') {
            i = header_end;
            continue;
        }
        let payload_end = segment_end(header_end + 1);
        if payload_end - header_end - 1 < 2 || bytes.get(payload_end) != Some(&b'.') {
            i = payload_end;
            continue;
        }
        let mut end = segment_end(payload_end + 1);
        let mut segments = 3;
        while segments < 5
            && bytes.get(end) == Some(&b'.')
            && bytes.get(end + 1).is_some_and(|&b| is_base64url_byte(b))
        {
            end = segment_end(end + 1);
            segments += 1;
        }
        out.push((i..end, Found::Jwt));
        i = end;
    }
}
