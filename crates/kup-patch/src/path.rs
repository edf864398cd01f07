//! The one path rule shared by manifest entries, bundle members and the builder's walk: a path
//! is relative, normalised and made of plain components, so it can never name anything outside
//! the place it is later put in.

use std::fmt;

/// Longest path accepted, in bytes. Generous for real payloads, and it keeps error messages and
/// manifests bounded.
pub const MAX_PATH_BYTES: usize = 1024;

/// Why a path (of a manifest entry or a bundle member) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Absolute,
    /// A `..` component.
    Escapes,
    /// `a//b`, or a trailing slash on something that is not a directory.
    EmptyComponent,
    /// A `.` component: the path is not normalised.
    DotComponent,
    /// A backslash or a control character, which other tools read differently.
    BadCharacter,
    NotUtf8,
    TooLong,
    /// A member that is neither `manifest.json`, `manifest.sig` nor under `files/`.
    OutsideFiles,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "is empty",
            PathProblem::Absolute => "is an absolute path",
            PathProblem::Escapes => "escapes the bundle",
            PathProblem::EmptyComponent => "has an empty path component",
            PathProblem::DotComponent => "has a \".\" path component (paths must be normalised)",
            PathProblem::BadCharacter => "contains a backslash or a control character",
            PathProblem::NotUtf8 => "is not valid UTF-8",
            PathProblem::TooLong => "is longer than 1024 bytes",
            PathProblem::OutsideFiles => {
                "is outside files/ (only manifest.json and manifest.sig may sit beside it)"
            }
        })
    }
}

/// Checks that `path` is relative, normalised and free of `..`, `.` and empty components.
pub fn check_relative(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    // `..` is reported before anything else: it is the one that matters most to an operator.
    if path.split('/').any(|c| c == "..") {
        return Err(PathProblem::Escapes);
    }
    if path.split('/').any(str::is_empty) {
        return Err(PathProblem::EmptyComponent);
    }
    if path.split('/').any(|c| c == ".") {
        return Err(PathProblem::DotComponent);
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathProblem::BadCharacter);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PathProblem::TooLong);
    }
    Ok(())
}

/// What a tar member is, by name.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberName {
    Manifest,
    Signature,
    /// A directory at or under `files/`; carries nothing and is ignored once checked.
    Dir,
    /// A payload file, by its manifest path (without the `files/` prefix).
    File(String),
}

/// Classifies a raw member name, refusing anything that could escape or is not part of the
/// format. Directories may carry one trailing slash, as tar writers put it there.
pub fn classify_member(raw: &[u8], is_dir: bool) -> Result<MemberName, PathProblem> {
    let name = std::str::from_utf8(raw).map_err(|_| PathProblem::NotUtf8)?;
    let name = match name.strip_suffix('/') {
        Some(stripped) if is_dir => stripped,
        _ => name,
    };
    check_relative(name)?;
    if !is_dir {
        if name == crate::MANIFEST_MEMBER {
            return Ok(MemberName::Manifest);
        }
        if name == crate::SIGNATURE_MEMBER {
            return Ok(MemberName::Signature);
        }
    }
    if is_dir && name == crate::FILES_DIR {
        return Ok(MemberName::Dir);
    }
    match name.strip_prefix("files/") {
        Some(_) if is_dir => Ok(MemberName::Dir),
        Some(rel) => Ok(MemberName::File(rel.to_string())),
        None => Err(PathProblem::OutsideFiles),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for ok in ["a", "bin/kubeadm", "a.b/c-d_e", "..a/b..", "x/.hidden"] {
            assert_eq!(check_relative(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", PathProblem::Empty),
            ("/etc/passwd", PathProblem::Absolute),
            ("..", PathProblem::Escapes),
            ("../x", PathProblem::Escapes),
            ("a/../../x", PathProblem::Escapes),
            ("a//b", PathProblem::EmptyComponent),
            ("a/", PathProblem::EmptyComponent),
            ("./a", PathProblem::DotComponent),
            ("a/./b", PathProblem::DotComponent),
            ("a\\b", PathProblem::BadCharacter),
            ("a\nb", PathProblem::BadCharacter),
        ];
        for (path, problem) in cases {
            assert_eq!(check_relative(path), Err(problem), "{path:?}");
        }
        assert_eq!(check_relative(&"a".repeat(1025)), Err(PathProblem::TooLong));
    }

    #[test]
    fn member_names() {
        use MemberName::*;
        assert_eq!(classify_member(b"manifest.json", false), Ok(Manifest));
        assert_eq!(classify_member(b"manifest.sig", false), Ok(Signature));
        assert_eq!(classify_member(b"files/", true), Ok(Dir));
        assert_eq!(classify_member(b"files/bin/", true), Ok(Dir));
        assert_eq!(
            classify_member(b"files/bin/kubeadm", false),
            Ok(File("bin/kubeadm".into()))
        );
        let refused = [
            (&b"files/"[..], false, PathProblem::EmptyComponent),
            (b"files", false, PathProblem::OutsideFiles),
            (b"manifest.json/", true, PathProblem::OutsideFiles),
            (b"other.txt", false, PathProblem::OutsideFiles),
            (b"files/../x", false, PathProblem::Escapes),
            (b"/files/x", false, PathProblem::Absolute),
            (b"files//x", false, PathProblem::EmptyComponent),
            (b"files/\xff", false, PathProblem::NotUtf8),
        ];
        for (raw, dir, problem) in refused {
            assert_eq!(classify_member(raw, dir), Err(problem), "{raw:?}");
        }
    }
}
