//! The vocabulary as raw bytes in a trie laid out in preorder: walking it visits shared
//! prefixes once, and a rejected byte skips its whole subtree with one jump.

/// One trie node: the byte on the edge into it and where its subtree ends.
#[derive(Debug, Clone, Copy)]
pub struct TrieNode {
    pub byte: u8,
    /// 1 for a child of the root.
    pub depth: u16,
    /// Index just past this node's subtree.
    pub end: u32,
    /// Tokens whose bytes end here: `ids[ids_start..ids_end]`.
    pub ids_start: u32,
    pub ids_end: u32,
}

/// Tokens in a preorder trie.
#[derive(Debug, Clone, Default)]
pub struct Trie {
    pub nodes: Vec<TrieNode>,
    pub ids: Vec<u32>,
    pub max_depth: usize,
}

impl Trie {
    /// The trie of `order`'s tokens; `text(id)` gives a token's bytes.
    fn build<'a>(order: &mut [u32], text: impl Fn(u32) -> &'a [u8]) -> Trie {
        order.sort_by(|&a, &b| text(a).cmp(text(b)).then(a.cmp(&b)));
        let mut t = Trie::default();
        // Nodes on the path to the previous token, root excluded.
        let mut path: Vec<usize> = Vec::new();
        let mut prev: &[u8] = &[];
        for &id in order.iter() {
            let bytes = text(id);
            let common = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            while path.len() > common {
                let n = path.pop().unwrap_or_default();
                t.nodes[n].end = t.nodes.len() as u32;
            }
            for (d, &byte) in bytes.iter().enumerate().skip(common) {
                t.nodes.push(TrieNode {
                    byte,
                    depth: (d + 1) as u16,
                    end: 0,
                    ids_start: t.ids.len() as u32,
                    ids_end: t.ids.len() as u32,
                });
                path.push(t.nodes.len() - 1);
            }
            // Equal texts are adjacent in the order, so a node's ids stay contiguous.
            let last = *path.last().unwrap_or(&0);
            t.ids.push(id);
            t.nodes[last].ids_end = t.ids.len() as u32;
            t.max_depth = t.max_depth.max(bytes.len());
            prev = bytes;
        }
        for n in path {
            t.nodes[n].end = t.nodes.len() as u32;
        }
        t
    }
}

/// Every token's bytes, once per tokenizer: a trie of all tokens, and for the inside of a
/// string (where almost every token fits, so walking the whole trie would be the slow case)
/// the plain-text tokens by character count beside a trie of the others.
#[derive(Debug, Clone)]
pub struct TokenTrie {
    pub(super) all: Trie,
    /// Tokens that are whole UTF-8 text without `"`, `\\` or control characters, as
    /// `(characters, id)` sorted by characters: inside a string with room for n more
    /// characters, exactly those with at most n are allowed.
    pub(super) plain: Vec<(u32, u32)>,
    /// Every other token.
    pub(super) other: Trie,
    /// `bytes[offsets[id]..offsets[id + 1]]`; `present[id]` is false for tokens with no text.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    present: Vec<bool>,
}

/// Characters of `bytes` if it is plain string content (see [`TokenTrie::plain`]).
fn plain_chars(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let special = |c: char| c == '"' || c == '\\' || (c as u32) < 0x20;
    (!text.contains(special)).then(|| text.chars().count() as u32)
}

impl TokenTrie {
    /// Builds the tries from each id's bytes (`None`: the token is never allowed, e.g. a
    /// special token; an empty text counts as `None`, since it would let the output stall).
    pub fn new(tokens: Vec<Option<Vec<u8>>>) -> TokenTrie {
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        let mut present = Vec::with_capacity(tokens.len());
        for t in &tokens {
            offsets.push(bytes.len() as u32);
            let t = t.as_deref().filter(|t| !t.is_empty());
            present.push(t.is_some());
            bytes.extend_from_slice(t.unwrap_or_default());
        }
        offsets.push(bytes.len() as u32);
        let text =
            |id: u32| &bytes[offsets[id as usize] as usize..offsets[id as usize + 1] as usize];
        let mut order: Vec<u32> = (0..tokens.len() as u32)
            .filter(|&i| present[i as usize])
            .collect();
        let all = Trie::build(&mut order, text);
        let mut plain = Vec::new();
        let mut others = Vec::new();
        for &id in &order {
            match plain_chars(text(id)) {
                Some(n) => plain.push((n, id)),
                None => others.push(id),
            }
        }
        plain.sort_unstable();
        let other = Trie::build(&mut others, text);
        TokenTrie {
            all,
            plain,
            other,
            bytes,
            offsets,
            present,
        }
    }

    /// Number of ids the trie was built over.
    pub fn vocab_len(&self) -> usize {
        self.present.len()
    }

    /// The bytes of `id`, if it has any text.
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        if !*self.present.get(i)? {
            return None;
        }
        Some(&self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize])
    }

    /// Number of nodes of the full trie, and of the trie walked inside strings.
    pub fn node_counts(&self) -> (usize, usize) {
        (self.all.nodes.len(), self.other.nodes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preorder_layout_shares_prefixes_and_skips_subtrees() {
        let toks = vec![
            Some(b"ab".to_vec()),
            Some(b"a".to_vec()),
            None,
            Some(b"b".to_vec()),
            Some(b"abc".to_vec()),
            Some(b"ab".to_vec()),
            Some(Vec::new()),
        ];
        let t = TokenTrie::new(toks);
        let view: Vec<(char, u16, u32, Vec<u32>)> = t
            .all
            .nodes
            .iter()
            .map(|n| {
                let ids = t.all.ids[n.ids_start as usize..n.ids_end as usize].to_vec();
                (n.byte as char, n.depth, n.end, ids)
            })
            .collect();
        assert_eq!(
            view,
            vec![
                ('a', 1, 3, vec![1]),
                ('b', 2, 3, vec![0, 5]),
                ('c', 3, 3, vec![4]),
                ('b', 1, 4, vec![3]),
            ]
        );
        assert_eq!(t.all.max_depth, 3);
        assert_eq!(t.plain, vec![(1, 1), (1, 3), (2, 0), (2, 5), (3, 4)]);
        assert!(t.other.nodes.is_empty());
        let mixed = TokenTrie::new(vec![
            Some(b"a\"".to_vec()),
            Some(vec![0xC3]),
            Some("\u{e9}".into()),
        ]);
        assert_eq!(
            mixed.plain,
            vec![(1, 2)],
            "whole characters without quotes are plain"
        );
        assert_eq!(mixed.other.ids, vec![0, 1]);
        assert_eq!(t.token_bytes(4), Some(&b"abc"[..]));
        assert_eq!(t.token_bytes(2), None);
        assert_eq!(t.token_bytes(6), None);
        assert_eq!(t.token_bytes(99), None);
    }
}
