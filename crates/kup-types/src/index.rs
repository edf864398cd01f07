//! Lookups by name in the lists of an observation or a snapshot, in O(1) instead of a scan.

use rustc_hash::FxHashMap;

/// Positions in a list, by name. Derived data: it is checked on every use, so a stale index
/// (after someone pushed to the list without reindexing) costs a scan, never a wrong answer.
#[derive(Clone, Debug, Default)]
pub struct NameIndex(FxHashMap<String, usize>);

impl NameIndex {
    pub fn build<'a>(names: impl Iterator<Item = &'a str>) -> Self {
        Self(names.enumerate().map(|(i, n)| (n.to_string(), i)).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The position of `name` in `items`, whose names `key` gives.
    pub fn find<T>(&self, items: &[T], name: &str, key: impl Fn(&T) -> &str) -> Option<usize> {
        match self.0.get(name) {
            Some(&i) if items.get(i).is_some_and(|t| key(t) == name) => Some(i),
            _ => items.iter().position(|t| key(t) == name),
        }
    }
}

impl PartialEq for NameIndex {
    /// Derived data: what holds it is equal by its contents.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for NameIndex {}
