//! The `--license` rule: bioimage.io requires the package's licence as one SPDX licence identifier, spelled
//! as the SPDX License List spells it. A value in another case, or without its punctuation, is refused with
//! the right spelling; a deprecated identifier with its replacements; anything else with examples.

use super::spdx::{DEPRECATED_IDS, LICENSE_IDS};

/// Why a `--license` value is refused. Every message is one line naming the flag and what to pass instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error(
        "--license `{given}` is not spelled as an SPDX licence identifier: did you mean {suggestion}? \
         (bioimage.io matches the SPDX spelling exactly)"
    )]
    Spelling { given: String, suggestion: String },
    #[error(
        "--license `{given}` is a deprecated SPDX licence identifier, which bioimage.io flags; use {replacement}"
    )]
    Deprecated { given: String, replacement: String },
    #[error(
        "--license `{given}` is a licence expression; a bioimage.io package takes one SPDX licence identifier \
         (e.g. --license MIT)"
    )]
    Expression { given: String },
    #[error(
        "--license `{given}` is not an SPDX licence identifier, which bioimage.io requires; pass one from the \
         SPDX License List, e.g. MIT, Apache-2.0, BSD-3-Clause, GPL-3.0-or-later, CC-BY-4.0 or CC0-1.0"
    )]
    Unknown { given: String },
}

/// The value without case and punctuation: `Apache 2.0`, `apache-2.0` and `APACHE2.0` agree.
fn loose(value: &str) -> String {
    value.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// "A", "A or B", "A, B or C".
fn either(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The current identifiers that replace the deprecated `id`: `GPL-3.0` -> `GPL-3.0-only`, `GPL-3.0-or-later`;
/// `GPL-3.0+` -> `GPL-3.0-or-later`; none for ids without such a successor.
fn replacements(id: &str) -> Vec<&'static str> {
    let (base, suffixes): (&str, &[&str]) = match id.strip_suffix('+') {
        Some(base) => (base, &["-or-later"]),
        None => (id, &["-only", "-or-later"]),
    };
    suffixes
        .iter()
        .filter_map(|suffix| {
            let want = format!("{base}{suffix}");
            LICENSE_IDS.iter().copied().find(|&known| known == want)
        })
        .collect()
}

/// Accepts exactly the current SPDX licence identifiers (see [`super::spdx`]).
pub fn check_license(value: &str) -> Result<(), LicenseError> {
    if LICENSE_IDS.contains(&value) {
        return Ok(());
    }
    let given = value.to_string();
    if let Some(id) = LICENSE_IDS.iter().find(|id| id.eq_ignore_ascii_case(value)) {
        return Err(LicenseError::Spelling { given, suggestion: id.to_string() });
    }
    if let Some(id) = DEPRECATED_IDS.iter().find(|id| id.eq_ignore_ascii_case(value)) {
        let found = replacements(id);
        let replacement = if found.is_empty() {
            "a current identifier from the SPDX License List".to_string()
        } else {
            either(&found)
        };
        return Err(LicenseError::Deprecated { given, replacement });
    }
    let words: Vec<&str> = value.split_whitespace().collect();
    let operator = |w: &&str| ["and", "or", "with"].iter().any(|op| w.eq_ignore_ascii_case(op));
    if words.len() > 1 && words.iter().any(operator) {
        return Err(LicenseError::Expression { given });
    }
    let key = loose(value);
    let close: Vec<&str> =
        LICENSE_IDS.iter().copied().filter(|id| !key.is_empty() && loose(id) == key).collect();
    if !close.is_empty() {
        return Err(LicenseError::Spelling { given, suggestion: either(&close) });
    }
    Err(LicenseError::Unknown { given })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_identifiers_are_accepted() {
        for id in [
            "MIT",
            "Apache-2.0",
            "BSD-2-Clause",
            "BSD-3-Clause",
            "GPL-2.0-only",
            "GPL-2.0-or-later",
            "GPL-3.0-only",
            "GPL-3.0-or-later",
            "LGPL-2.1-only",
            "LGPL-2.1-or-later",
            "LGPL-3.0-only",
            "LGPL-3.0-or-later",
            "MPL-2.0",
            "CC0-1.0",
            "CC-BY-4.0",
            "CC-BY-SA-4.0",
            "CC-BY-NC-4.0",
            "CC-BY-NC-SA-4.0",
            "CC-BY-NC-ND-4.0",
            "CC-BY-ND-4.0",
            "Unlicense",
            "ISC",
            "Zlib",
            "BSL-1.0",
            "EPL-2.0",
            "AGPL-3.0-only",
            "AGPL-3.0-or-later",
            "0BSD",
        ] {
            check_license(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn the_list_is_the_whole_spdx_list_without_duplicates() {
        assert!(LICENSE_IDS.len() > 700, "{}", LICENSE_IDS.len());
        let mut lower: Vec<String> =
            LICENSE_IDS.iter().chain(DEPRECATED_IDS).map(|id| id.to_lowercase()).collect();
        lower.sort();
        let n = lower.len();
        lower.dedup();
        assert_eq!(lower.len(), n, "two identifiers differ only in case");
        for id in LICENSE_IDS {
            check_license(id).unwrap();
        }
    }

    #[test]
    fn another_case_is_refused_with_the_spdx_spelling() {
        for (given, right) in [("mit", "MIT"), ("apache-2.0", "Apache-2.0"), ("cc-by-4.0", "CC-BY-4.0")] {
            let err = check_license(given).unwrap_err();
            assert_eq!(err, LicenseError::Spelling { given: given.into(), suggestion: right.into() });
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("--license `{given}`")), "{msg}");
            assert!(msg.contains(&format!("did you mean {right}?")), "{msg}");
        }
        // Punctuation left out or changed.
        let err = check_license("Apache 2.0").unwrap_err().to_string();
        assert!(err.contains("did you mean Apache-2.0?"), "{err}");
        let err = check_license("gpl3.0-only").unwrap_err().to_string();
        assert!(err.contains("did you mean GPL-3.0-only?"), "{err}");
    }

    #[test]
    fn deprecated_identifiers_name_their_replacements() {
        let err = check_license("GPL-3.0").unwrap_err().to_string();
        assert!(err.contains("deprecated") && err.ends_with("use GPL-3.0-only or GPL-3.0-or-later"), "{err}");
        let err = check_license("lgpl-2.1+").unwrap_err().to_string();
        assert!(err.ends_with("use LGPL-2.1-or-later"), "{err}");
        let err = check_license("wxWindows").unwrap_err().to_string();
        assert!(err.contains("deprecated") && err.contains("SPDX License List"), "{err}");
    }

    #[test]
    fn other_values_are_refused_on_one_line_naming_the_flag() {
        for bad in ["", "Proprietary", "BSD", "public domain", "MIT License", "GPLv3"] {
            let err = check_license(bad).unwrap_err();
            assert_eq!(err, LicenseError::Unknown { given: bad.into() }, "{bad}");
            let msg = err.to_string();
            assert!(msg.starts_with("--license") && msg.contains("e.g. MIT") && !msg.contains('\n'), "{msg}");
        }
        for expression in ["MIT OR Apache-2.0", "GPL-2.0-only with Classpath-exception-2.0"] {
            let err = check_license(expression).unwrap_err();
            assert!(matches!(err, LicenseError::Expression { .. }), "{expression}: {err}");
            assert!(err.to_string().contains("one SPDX licence identifier"), "{err}");
        }
    }
}
