//! ASCII case-insensitive substring search of the **count** step (submit → queue → fetch →
//! **count** → NSQ → DB → poll), used by the word matcher to search raw text where it is
//! instead of folding it into a copy first.
//!
//! `memchr::memmem` has no case-insensitive mode, and `aho-corasick`'s
//! `ascii_case_insensitive` gives up its SIMD prefilters (a single pattern falls back to a
//! rare-byte `memchr` scan); the bench row `aho-corasick, ascii_case_insensitive` measures it
//! next to this one. This is memchr's "packed pair" idea with the case folding done in
//! register: two rare bytes of the needle, at their offsets, are compared over 32 (AVX2) or
//! 16 (SSE2) haystack positions at once; a letter is compared as `v | 0x20 == lower` (only
//! its two cases pass), any other byte exactly. Each candidate is then verified byte by
//! byte. Non-ASCII bytes never equal an ASCII needle byte, so a match is exactly an
//! occurrence of the needle in the ASCII-lowercased haystack.

use memchr::arch::all::packedpair::{HeuristicFrequencyRank, Pair};

/// A case-insensitive finder for one ASCII needle.
#[derive(Clone, Debug)]
pub struct FoldFinder {
    /// The needle, ASCII-lowercased.
    needle: Box<[u8]>,
    /// Offsets of the two rare bytes (`None` for a one-byte needle).
    pair: Option<(usize, usize)>,
    /// Whether the AVX2 loop may be used (checked once, at construction).
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
}

/// Case-folded byte ranks for choosing the pair: a letter ranks as its more frequent case
/// in [`RANK`] (its two cases are found together, so the pair should avoid letters that
/// are common in either case).
struct FoldedRank;

impl HeuristicFrequencyRank for FoldedRank {
    fn rank(&self, byte: u8) -> u8 {
        let r = |b: u8| RANK[usize::from(b)];
        if byte.is_ascii_alphabetic() {
            r(byte.to_ascii_lowercase()).max(r(byte.to_ascii_uppercase()))
        } else {
            r(byte)
        }
    }
}

/// memchr's background byte ranks (`arch::all::packedpair::default_rank`, not exported by
/// the crate; copied from memchr 2.8, MIT/Unlicense): higher is more frequent.
#[rustfmt::skip]
const RANK: [u8; 256] = [
    55, 52, 51, 50, 49, 48, 47, 46, 45, 103, 242, 66, 67, 229, 44, 43,
    42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 56, 32, 31, 30, 29, 28,
    255, 148, 164, 149, 136, 160, 155, 173, 221, 222, 134, 122, 232, 202, 215, 224,
    208, 220, 204, 187, 183, 179, 177, 168, 178, 200, 226, 195, 154, 184, 174, 126,
    120, 191, 157, 194, 170, 189, 162, 161, 150, 193, 142, 137, 171, 176, 185, 167,
    186, 112, 175, 192, 188, 156, 140, 143, 123, 133, 128, 147, 138, 146, 114, 223,
    151, 249, 216, 238, 236, 253, 227, 218, 230, 247, 135, 180, 241, 233, 246, 244,
    231, 139, 245, 243, 251, 235, 201, 196, 240, 214, 152, 182, 205, 181, 127, 27,
    212, 211, 210, 213, 228, 197, 169, 159, 131, 172, 105, 80, 98, 96, 97, 81,
    207, 145, 116, 115, 144, 130, 153, 121, 107, 132, 109, 110, 124, 111, 82, 108,
    118, 141, 113, 129, 119, 125, 165, 117, 92, 106, 83, 72, 99, 93, 65, 79,
    166, 237, 163, 199, 190, 225, 209, 203, 198, 217, 219, 206, 234, 248, 158, 239,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
];

impl FoldFinder {
    /// A finder for `needle` compared ASCII case-insensitively; `None` when the needle is
    /// empty or not ASCII. (The pair is chosen among the first 256 bytes.)
    pub fn new(needle: &[u8]) -> Option<FoldFinder> {
        if needle.is_empty() || !needle.is_ascii() {
            return None;
        }
        let needle: Box<[u8]> = needle.to_ascii_lowercase().into();
        let pair = Pair::with_ranker(&needle, FoldedRank).map(|p| {
            let (a, b) = (usize::from(p.index1()), usize::from(p.index2()));
            (a.min(b), a.max(b))
        });
        Some(FoldFinder {
            needle,
            pair,
            #[cfg(target_arch = "x86_64")]
            avx2: std::arch::is_x86_feature_detected!("avx2"),
        })
    }

    /// The needle, lowercased.
    pub fn needle(&self) -> &[u8] {
        &self.needle
    }

    /// Start of the first occurrence of the needle in `hay`, ignoring ASCII case.
    #[inline]
    pub fn find(&self, hay: &[u8]) -> Option<usize> {
        let n = self.needle.len();
        if hay.len() < n {
            return None;
        }
        let Some((i1, i2)) = self.pair else {
            return find_byte(self.needle[0], hay);
        };
        #[cfg(target_arch = "x86_64")]
        {
            let mut done = 0;
            if self.avx2 {
                // SAFETY: AVX2 was detected at construction.
                let (found, d) = unsafe { x86::find_avx2(&self.needle, i1, i2, hay) };
                if found.is_some() {
                    return found;
                }
                done = d;
            }
            // SAFETY: SSE2 is part of the x86_64 baseline.
            let (found, d) = unsafe { x86::find_sse2(&self.needle, i1, i2, hay, done) };
            if found.is_some() {
                return found;
            }
            find_scalar(&self.needle, i1, i2, hay, d)
        }
        #[cfg(not(target_arch = "x86_64"))]
        find_scalar(&self.needle, i1, i2, hay, 0)
    }

    /// Iterator over the non-overlapping occurrences, left to right.
    pub fn find_iter<'h>(&'h self, hay: &'h [u8]) -> impl Iterator<Item = usize> + 'h {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let m = pos + self.find(hay.get(pos..)?)?;
            pos = m + self.needle.len();
            Some(m)
        })
    }
}

/// One-byte needle: `memchr2` over both cases of a letter, `memchr` otherwise.
fn find_byte(b: u8, hay: &[u8]) -> Option<usize> {
    if b.is_ascii_lowercase() {
        memchr::memchr2(b, b.to_ascii_uppercase(), hay)
    } else {
        memchr::memchr(b, hay)
    }
}

/// Whether `hay` (at least as long as `needle`) starts with the lowercase `needle`,
/// ignoring ASCII case.
#[inline(always)]
fn starts_with_folded(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .iter()
            .zip(needle)
            .all(|(&h, &l)| h.to_ascii_lowercase() == l)
}

/// The candidates starting at `from..` one by one (the tail the vector loops leave, and the
/// whole search without SIMD): the rarer byte first, then the whole needle.
fn find_scalar(needle: &[u8], i1: usize, i2: usize, hay: &[u8], from: usize) -> Option<usize> {
    let n = needle.len();
    let last = hay.len().checked_sub(n)?;
    let (b1, b2) = (needle[i1], needle[i2]);
    (from..=last).find(|&p| {
        hay[p + i1].to_ascii_lowercase() == b1
            && hay[p + i2].to_ascii_lowercase() == b2
            && starts_with_folded(&hay[p..], needle)
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The vector loops. Each returns the first match among the candidate starts it covered
    //! and how far it got (`done`: every start `< done` was tested), so the next, narrower
    //! loop goes on from there.
    use std::arch::x86_64::*;

    use super::starts_with_folded;

    /// The byte to OR into haystack bytes before comparing with `b`: `0x20` folds both
    /// cases of a letter onto the lowercase one; other bytes are compared exactly.
    fn fold_bit(b: u8) -> i8 {
        if b.is_ascii_lowercase() { 0x20 } else { 0 }
    }

    /// Tests the candidates set in `mask` (bit `k` = start `p + k`), lowest first.
    #[inline(always)]
    fn verify(mut mask: u32, p: usize, needle: &[u8], hay: &[u8]) -> Option<usize> {
        while mask != 0 {
            let c = p + mask.trailing_zeros() as usize;
            // `c + n <= hay.len()`: `c < p + 32` and the loops keep `p + 32 + n - 1 <=
            // hay.len()` (their `span`).
            if starts_with_folded(&hay[c..], needle) {
                return Some(c);
            }
            mask &= mask - 1;
        }
        None
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn find_avx2(
        needle: &[u8],
        i1: usize,
        i2: usize,
        hay: &[u8],
    ) -> (Option<usize>, usize) {
        let n = needle.len();
        // Starts `p..p + 32` are tested together: the loads reach `p + i2 + 32 <= len`, and
        // every such start has the needle inside `hay` when `p + 32 + n - 1 <= len`.
        let span = 32 + (n - 1).max(i2);
        if hay.len() < span {
            return (None, 0);
        }
        let (b1, b2) = (needle[i1], needle[i2]);
        let (v1, f1) = (_mm256_set1_epi8(b1 as i8), _mm256_set1_epi8(fold_bit(b1)));
        let (v2, f2) = (_mm256_set1_epi8(b2 as i8), _mm256_set1_epi8(fold_bit(b2)));
        let ptr = hay.as_ptr();
        let mut p = 0;
        while p + span <= hay.len() {
            // SAFETY: `p + i2 + 32 <= p + span <= hay.len()` (and i1 < i2).
            let (h1, h2) = unsafe {
                (
                    _mm256_loadu_si256(ptr.add(p + i1).cast()),
                    _mm256_loadu_si256(ptr.add(p + i2).cast()),
                )
            };
            let eq = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_or_si256(h1, f1), v1),
                _mm256_cmpeq_epi8(_mm256_or_si256(h2, f2), v2),
            );
            let mask = _mm256_movemask_epi8(eq) as u32;
            if mask != 0
                && let Some(m) = verify(mask, p, needle, hay)
            {
                return (Some(m), p);
            }
            p += 32;
        }
        (None, p)
    }

    /// `from` is where the caller stopped.
    ///
    /// # Safety
    /// The CPU must support SSE2 (every x86_64 CPU does).
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn find_sse2(
        needle: &[u8],
        i1: usize,
        i2: usize,
        hay: &[u8],
        from: usize,
    ) -> (Option<usize>, usize) {
        let n = needle.len();
        let span = 16 + (n - 1).max(i2);
        let (b1, b2) = (needle[i1], needle[i2]);
        let (v1, f1) = (_mm_set1_epi8(b1 as i8), _mm_set1_epi8(fold_bit(b1)));
        let (v2, f2) = (_mm_set1_epi8(b2 as i8), _mm_set1_epi8(fold_bit(b2)));
        let ptr = hay.as_ptr();
        let mut p = from;
        while p + span <= hay.len() {
            // SAFETY: `p + i2 + 16 <= p + span <= hay.len()`.
            let (h1, h2) = unsafe {
                (
                    _mm_loadu_si128(ptr.add(p + i1).cast()),
                    _mm_loadu_si128(ptr.add(p + i2).cast()),
                )
            };
            let eq = _mm_and_si128(
                _mm_cmpeq_epi8(_mm_or_si128(h1, f1), v1),
                _mm_cmpeq_epi8(_mm_or_si128(h2, f2), v2),
            );
            let mask = _mm_movemask_epi8(eq) as u32;
            if mask != 0
                && let Some(m) = verify(mask, p, needle, hay)
            {
                return (Some(m), p);
            }
            p += 16;
        }
        (None, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reference: occurrences in the ASCII-lowercased haystack.
    fn naive(hay: &[u8], needle: &[u8]) -> Vec<usize> {
        let (h, n) = (hay.to_ascii_lowercase(), needle.to_ascii_lowercase());
        let mut out = Vec::new();
        let mut p = 0;
        while p + n.len() <= h.len() {
            if h[p..].starts_with(&n) {
                out.push(p);
                p += n.len();
            } else {
                p += 1;
            }
        }
        out
    }

    fn all(f: &FoldFinder, hay: &[u8]) -> Vec<usize> {
        f.find_iter(hay).collect()
    }

    #[test]
    fn finds_both_cases_and_non_letters_exactly() {
        let f = FoldFinder::new(b"PyThon").unwrap();
        assert_eq!(f.needle(), b"python");
        let hay = b"xx PYTHON python Python pyth0n pYtHoN".repeat(3);
        assert_eq!(all(&f, &hay), naive(&hay, b"python"));
        assert_eq!(all(&f, &hay).len(), 12);
        // `v | 0x20` must not make '@' (0x40) equal '`' (0x60), nor '[' equal '{'.
        let f = FoldFinder::new(b"`{").unwrap();
        assert_eq!(f.find(b"@[ `{"), Some(3));
        let f = FoldFinder::new(b"a").unwrap();
        assert_eq!(f.find(b"@!A"), Some(2));
        assert!(FoldFinder::new(b"").is_none());
        assert!(FoldFinder::new("é".as_bytes()).is_none());
    }

    #[test]
    fn every_position_and_length_around_the_vector_widths() {
        for n in 1..=40 {
            let needle: Vec<u8> = (0..n).map(|i| b"aBc-9_xY"[i % 8]).collect();
            for len in 0..140usize {
                for at in 0..=len.saturating_sub(n) {
                    if at + n > len {
                        break;
                    }
                    let mut hay = vec![b'.'; len];
                    hay[at..at + n].copy_from_slice(&needle.to_ascii_uppercase());
                    let f = FoldFinder::new(&needle).unwrap();
                    assert_eq!(f.find(&hay), Some(at), "n={n} len={len} at={at}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn equals_the_lowercased_search(
            hay in proptest::collection::vec(
                proptest::sample::select(b"aAbB-_ \xc4\xb0kK\xe2\x84\xaa@`[{zZ".to_vec()),
                0..300,
            ),
            needle in proptest::collection::vec(
                proptest::sample::select(b"aAbB-_ kK@`[{zZ".to_vec()),
                1..8,
            ),
        ) {
            let f = FoldFinder::new(&needle).unwrap();
            proptest::prop_assert_eq!(all(&f, &hay), naive(&hay, &needle));
        }
    }
}
