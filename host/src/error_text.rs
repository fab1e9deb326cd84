//! An error and its causes as one line for the user.

use std::fmt;

/// Displays an `anyhow::Error` with its chain of causes joined by `: `, as `{:#}` does, but
/// leaves out a cause whose text the line already holds: many error types print their source
/// inside their own message (`cannot read config file `x.yaml`: No such file or directory`),
/// and `{:#}` would repeat it.
pub struct ErrorText<'a>(pub &'a anyhow::Error);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = String::new();
        for cause in self.0.chain() {
            let text = cause.to_string();
            if text.is_empty() || line.contains(&text) {
                continue;
            }
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read config file `x.yaml`: {source}")]
    struct Read {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::new(Read { source: io });
        assert_eq!(format!("{e:#}").matches("No such file").count(), 2, "the case this type is for");
        assert_eq!(
            ErrorText(&e).to_string(),
            "cannot read config file `x.yaml`: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn contexts_and_new_causes_are_kept_in_order() {
        let e = Err::<(), _>(anyhow::anyhow!("disk full")).context("writing log.yaml").context("run x").unwrap_err();
        assert_eq!(ErrorText(&e).to_string(), "run x: writing log.yaml: disk full");
    }
}
