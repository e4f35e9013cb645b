//! The one rule for the model name (`--name`), whichever format writes it: the bioimage.io `name` and the
//! Triton model folder (also its name in request URLs) take the same names, refused with the same message.
//!
//! The rule is where both formats agree: bioimage.io takes 5 to 128 letters, digits, spaces and `_+-()` (and
//! warns past 64), Triton names a folder and a URL path segment, where spaces, `+` and parentheses do not
//! travel well.

/// The shortest and longest model names, in characters.
pub const MIN_NAME_LEN: usize = 5;
pub const MAX_NAME_LEN: usize = 64;

/// A `--name` refused by [`check_model_name`]: one line naming the flag, the problem and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--name `{}` is not a valid model name ({problem}): the bioimage.io name and the Triton model folder \
     take 5 to 64 ASCII letters, digits, `_` or `-` (e.g. --name segmenter)",
    .name.escape_debug()
)]
pub struct NameError {
    pub name: String,
    pub problem: String,
}

/// Accepts 5 to 64 ASCII letters, digits, `_` and `-`: the model name of every format the export writes.
pub fn check_model_name(name: &str) -> Result<(), NameError> {
    let refuse = |problem: String| Err(NameError { name: name.to_string(), problem });
    if let Some(c) = name.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        let shown = if c.is_whitespace() || c.is_control() { format!("{c:?}") } else { format!("`{c}`") };
        return refuse(format!("{shown} is not allowed"));
    }
    let len = name.len();
    if len < MIN_NAME_LEN {
        return refuse(format!("{len} characters, fewer than {MIN_NAME_LEN}"));
    }
    if len > MAX_NAME_LEN {
        return refuse(format!("{len} characters, more than {MAX_NAME_LEN}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_5_to_64_portable_characters_are_accepted() {
        for good in ["segmenter", "conifer_lumens-v2", "abcde", "A-1_b", &"n".repeat(64)] {
            check_model_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn four_and_65_characters_are_refused() {
        let err = check_model_name("abcd").unwrap_err();
        assert_eq!(err.problem, "4 characters, fewer than 5");
        let err = check_model_name(&"n".repeat(65)).unwrap_err();
        assert_eq!(err.problem, "65 characters, more than 64");
        for short in ["", "a", "seg"] {
            assert!(check_model_name(short).is_err(), "{short}");
        }
    }

    #[test]
    fn characters_outside_the_portable_set_are_refused() {
        for (bad, shown) in [
            ("slash/name", "`/`"),
            ("../up", "`.`"),
            ("dot.name", "`.`"),
            ("quote\"d", "`\"`"),
            ("with space", "' '"),
            ("tab\tname", "'\\t'"),
            ("a_b+c-d", "`+`"),
            ("Conifer (v2)", "' '"),
            ("lumens(v2)", "`(`"),
            ("caf\u{e9}-model", "`\u{e9}`"),
            ("x/y", "`/`"),
        ] {
            let err = check_model_name(bad).unwrap_err();
            assert_eq!(err.problem, format!("{shown} is not allowed"), "{bad}");
        }
    }

    #[test]
    fn the_message_is_one_line_naming_the_flag_and_the_rule() {
        let msg = check_model_name("abcd").unwrap_err().to_string();
        assert_eq!(
            msg,
            "--name `abcd` is not a valid model name (4 characters, fewer than 5): the bioimage.io name and the \
             Triton model folder take 5 to 64 ASCII letters, digits, `_` or `-` (e.g. --name segmenter)"
        );
        let msg = check_model_name("tab\tname").unwrap_err().to_string();
        assert!(msg.starts_with("--name `tab\\tname` is not") && !msg.contains('\t'), "{msg}");
    }
}
