//! `LINKSOCKS_*` environment variables: the subcommand chosen by `LINKSOCKS_MODE`, and the
//! fallbacks for flags that were not given (reference notes section 17).
//!
//! Lookups go through [`Env`], not `std::env` directly, so the resolution rules can be tested
//! without mutating the process environment (which races between test threads).

use std::ffi::OsString;

use crate::error::CliError;

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where environment values come from.
pub struct Env<'a> {
    lookup: Lookup<'a>,
}

impl<'a> Env<'a> {
    /// The process environment.
    pub fn process() -> Env<'static> {
        // A value that is not valid Unicode cannot be a token, URL or port; treating it as
        // unset matches what the reference (Go strings) would do with a garbled value closely
        // enough, and avoids a panic.
        Env::from_fn(|k| std::env::var(k).ok())
    }

    pub fn from_fn(f: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env {
            lookup: Box::new(f),
        }
    }

    /// The trimmed value of `key`; unset, empty and whitespace-only all count as unset, as in
    /// the reference, so `LINKSOCKS_TOKEN=" "` in a compose file does not become a token.
    pub fn string(&self, key: &str) -> Option<String> {
        let v = (self.lookup)(key)?;
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    pub fn port(&self, key: &str) -> Result<Option<u16>, CliError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => v.parse::<u16>().map(Some).map_err(|_| {
                CliError::Usage(format!(
                    "invalid {key}: {v:?} (expected a port number 0-65535)"
                ))
            }),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, CliError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => parse_bool(&v).map(Some).ok_or_else(|| {
                CliError::Usage(format!(
                    "invalid {key}: {v:?} (expected true/false, 1/0 or yes/no)"
                ))
            }),
        }
    }
}

/// Go's `strconv.ParseBool` spellings plus yes/no/on/off, which compose files commonly use.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The subcommand `LINKSOCKS_MODE` stands for, if it names one.
pub fn mode_command(mode: &str) -> Option<&'static str> {
    match mode.trim().to_ascii_lowercase().as_str() {
        "server" => Some("server"),
        "client" | "forward" => Some("client"),
        "provider" | "reverse" => Some("provider"),
        "connector" => Some("connector"),
        _ => None,
    }
}

/// Insert the subcommand named by `LINKSOCKS_MODE` when argv has none.
///
/// The top-level command takes no options of its own, so a subcommand (if any) is always the
/// first argument; anything not starting with `-` there is taken as the user's choice, even a
/// typo, so that clap reports it instead of the environment silently overriding it. Unknown
/// or empty modes are ignored, as in the reference.
pub fn apply_mode(mut args: Vec<OsString>, mode: Option<&str>) -> Vec<OsString> {
    if let Some(first) = args.get(1) {
        if !first.to_string_lossy().starts_with('-') {
            return args;
        }
    }
    if args.is_empty() {
        return args;
    }
    if let Some(cmd) = mode.and_then(mode_command) {
        args.insert(1, OsString::from(cmd));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn strings_are_trimmed_and_blank_means_unset() {
        let m = env(&[("A", "  tok \n"), ("B", "   "), ("C", "")]);
        let e = Env::from_fn(|k| m.get(k).cloned());
        assert_eq!(e.string("A").as_deref(), Some("tok"));
        assert_eq!(e.string("B"), None);
        assert_eq!(e.string("C"), None);
        assert_eq!(e.string("D"), None);
    }

    #[test]
    fn ports_parse_or_fail_clearly() {
        let m = env(&[("P", " 1080 "), ("Q", "70000"), ("R", "http"), ("S", " ")]);
        let e = Env::from_fn(|k| m.get(k).cloned());
        assert_eq!(e.port("P").unwrap(), Some(1080));
        assert_eq!(e.port("S").unwrap(), None);
        let err = e.port("Q").unwrap_err().to_string();
        assert!(err.contains("invalid Q") && err.contains("70000"), "{err}");
        assert!(e.port("R").is_err());
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for (v, want) in [
            ("true", true),
            ("1", true),
            ("YES", true),
            ("on", true),
            ("false", false),
            ("0", false),
            ("No", false),
        ] {
            let e = Env::from_fn(move |_| Some(v.to_string()));
            assert_eq!(e.bool("X").unwrap(), Some(want), "{v}");
        }
        let e = Env::from_fn(|_| Some("maybe".to_string()));
        let err = e.bool("LINKSOCKS_FASTOPEN").unwrap_err().to_string();
        assert!(
            err.contains("LINKSOCKS_FASTOPEN") && err.contains("maybe"),
            "{err}"
        );
        let e = Env::from_fn(|_| Some("  ".to_string()));
        assert_eq!(e.bool("X").unwrap(), None);
    }

    #[test]
    fn mode_names_and_aliases() {
        assert_eq!(mode_command("server"), Some("server"));
        assert_eq!(mode_command(" Forward "), Some("client"));
        assert_eq!(mode_command("REVERSE"), Some("provider"));
        assert_eq!(mode_command("provider"), Some("provider"));
        assert_eq!(mode_command("connector"), Some("connector"));
        assert_eq!(mode_command("client"), Some("client"));
        assert_eq!(mode_command("version"), None);
        assert_eq!(mode_command(""), None);
        assert_eq!(mode_command("nonsense"), None);
    }

    #[test]
    fn mode_is_inserted_only_without_a_subcommand() {
        assert_eq!(
            apply_mode(args(&["ls"]), Some("server")),
            args(&["ls", "server"])
        );
        assert_eq!(
            apply_mode(args(&["ls", "-t", "x"]), Some("reverse")),
            args(&["ls", "provider", "-t", "x"])
        );
        assert_eq!(
            apply_mode(args(&["ls", "--help"]), Some("client")),
            args(&["ls", "client", "--help"])
        );
        // An explicit subcommand (or `version`) wins.
        assert_eq!(
            apply_mode(args(&["ls", "client", "-t", "x"]), Some("server")),
            args(&["ls", "client", "-t", "x"])
        );
        assert_eq!(
            apply_mode(args(&["ls", "version"]), Some("server")),
            args(&["ls", "version"])
        );
        // Unknown, empty or absent modes change nothing.
        assert_eq!(
            apply_mode(args(&["ls", "-t", "x"]), Some("bogus")),
            args(&["ls", "-t", "x"])
        );
        assert_eq!(
            apply_mode(args(&["ls", "-t", "x"]), Some("  ")),
            args(&["ls", "-t", "x"])
        );
        assert_eq!(
            apply_mode(args(&["ls", "-t", "x"]), None),
            args(&["ls", "-t", "x"])
        );
        // An empty argv (no program name) is left alone rather than given a fake one.
        assert_eq!(
            apply_mode(Vec::new(), Some("server")),
            Vec::<OsString>::new()
        );
    }
}
