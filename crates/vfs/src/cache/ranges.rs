//! Sets of byte ranges: which parts of a cached file hold real data.

/// Sorted, non-overlapping, non-adjacent half-open ranges `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    spans: Vec<(u64, u64)>,
}

impl RangeSet {
    /// The set covering `[0, len)`.
    pub(crate) fn full(len: u64) -> Self {
        let mut r = RangeSet::default();
        r.insert(0, len);
        r
    }

    /// The spans, in order.
    pub(crate) fn spans(&self) -> &[(u64, u64)] {
        &self.spans
    }

    /// Build from spans in any order (as read back from disk).
    pub(crate) fn from_spans(spans: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut r = RangeSet::default();
        for (s, e) in spans {
            r.insert(s, e);
        }
        r
    }

    /// Add `[start, end)`.
    pub(crate) fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First span that ends at or after `start` (may merge).
        let i = self.spans.partition_point(|&(_, e)| e < start);
        // Spans that start at or before `end` from i on merge with it.
        let j = i + self.spans[i..].partition_point(|&(s, _)| s <= end);
        if i == j {
            self.spans.insert(i, (start, end));
            return;
        }
        let s = self.spans[i].0.min(start);
        let e = self.spans[j - 1].1.max(end);
        self.spans.splice(i..j, std::iter::once((s, e)));
    }

    /// Remove everything at or after `len`.
    pub(crate) fn truncate(&mut self, len: u64) {
        self.spans.retain(|&(s, _)| s < len);
        if let Some(last) = self.spans.last_mut() {
            last.1 = last.1.min(len);
        }
    }

    /// The parts of `[start, end)` not in the set, in order.
    pub(crate) fn missing(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        let mut pos = start;
        let i = self.spans.partition_point(|&(_, e)| e <= start);
        for &(s, e) in &self.spans[i..] {
            if s >= end {
                break;
            }
            if s > pos {
                out.push((pos, s));
            }
            pos = pos.max(e);
            if pos >= end {
                break;
            }
        }
        if pos < end {
            out.push((pos, end));
        }
        out
    }

    /// Is all of `[start, end)` in the set?
    pub(crate) fn contains(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let i = self.spans.partition_point(|&(_, e)| e <= start);
        self.spans
            .get(i)
            .is_some_and(|&(s, e)| s <= start && e >= end)
    }

    /// Total bytes in the set.
    pub(crate) fn total(&self) -> u64 {
        self.spans.iter().map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_overlapping_and_adjacent() {
        let mut r = RangeSet::default();
        r.insert(10, 20);
        r.insert(30, 40);
        assert_eq!(r.spans(), &[(10, 20), (30, 40)]);
        r.insert(20, 30);
        assert_eq!(r.spans(), &[(10, 40)]);
        r.insert(0, 5);
        r.insert(50, 60);
        r.insert(3, 55);
        assert_eq!(r.spans(), &[(0, 60)]);
        r.insert(70, 70);
        assert_eq!(r.spans(), &[(0, 60)]);
        r.insert(61, 62);
        assert_eq!(r.spans(), &[(0, 60), (61, 62)]);
        assert_eq!(r.total(), 61);
    }

    #[test]
    fn missing_and_contains() {
        let r = RangeSet::from_spans([(10, 20), (30, 40)]);
        assert_eq!(r.missing(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(r.missing(12, 18), vec![]);
        assert_eq!(r.missing(15, 35), vec![(20, 30)]);
        assert_eq!(r.missing(20, 30), vec![(20, 30)]);
        assert_eq!(r.missing(5, 5), vec![]);
        assert!(r.contains(10, 20));
        assert!(r.contains(15, 16));
        assert!(!r.contains(15, 25));
        assert!(!r.contains(0, 1));
        assert!(r.contains(3, 3));
    }

    #[test]
    fn truncate_cuts_spans() {
        let mut r = RangeSet::from_spans([(0, 10), (20, 30)]);
        r.truncate(25);
        assert_eq!(r.spans(), &[(0, 10), (20, 25)]);
        r.truncate(20);
        assert_eq!(r.spans(), &[(0, 10)]);
        r.truncate(0);
        assert!(r.spans().is_empty());
    }

    #[test]
    fn matches_a_byte_model() {
        // Random operations against a plain bitmap.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut r = RangeSet::default();
            let mut model = [false; 128];
            for _ in 0..20 {
                let a = next(128);
                let b = a + next(128 - a + 1);
                if next(5) == 0 {
                    r.truncate(a);
                    model[a as usize..].iter_mut().for_each(|x| *x = false);
                } else {
                    r.insert(a, b);
                    model[a as usize..b as usize]
                        .iter_mut()
                        .for_each(|x| *x = true);
                }
                let a = next(128);
                let b = a + next(128 - a + 1);
                let miss: u64 = r.missing(a, b).iter().map(|(s, e)| e - s).sum();
                let want = model[a as usize..b as usize]
                    .iter()
                    .filter(|x| !**x)
                    .count();
                assert_eq!(miss, want as u64);
                assert_eq!(r.total(), model.iter().filter(|x| **x).count() as u64);
            }
        }
    }
}
