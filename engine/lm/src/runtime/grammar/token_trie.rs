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

/// Every token's bytes, once per tokenizer.
#[derive(Debug, Clone)]
pub struct TokenTrie {
    pub(super) nodes: Vec<TrieNode>,
    pub(super) ids: Vec<u32>,
    pub(super) max_depth: usize,
    /// `bytes[offsets[id]..offsets[id + 1]]`; `present[id]` is false for tokens with no text.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    present: Vec<bool>,
}

impl TokenTrie {
    /// Builds the trie from each id's bytes (`None`: the token is never allowed, e.g. a special
    /// token; an empty text counts as `None`, since it would let the output stall).
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
        order.sort_by(|&a, &b| text(a).cmp(text(b)).then(a.cmp(&b)));

        let mut nodes: Vec<TrieNode> = Vec::new();
        let mut ids: Vec<u32> = Vec::with_capacity(order.len());
        // Nodes on the path to the previous token, root excluded.
        let mut path: Vec<usize> = Vec::new();
        let mut prev: &[u8] = &[];
        let mut max_depth = 0;
        for &id in &order {
            let t = text(id);
            let common = prev.iter().zip(t).take_while(|(a, b)| a == b).count();
            while path.len() > common {
                let n = path.pop().unwrap_or_default();
                nodes[n].end = nodes.len() as u32;
            }
            for (d, &byte) in t.iter().enumerate().skip(common) {
                nodes.push(TrieNode {
                    byte,
                    depth: (d + 1) as u16,
                    end: 0,
                    ids_start: ids.len() as u32,
                    ids_end: ids.len() as u32,
                });
                path.push(nodes.len() - 1);
            }
            // Equal texts are adjacent in the order, so a node's ids stay contiguous.
            let last = *path.last().unwrap_or(&0);
            ids.push(id);
            nodes[last].ids_end = ids.len() as u32;
            max_depth = max_depth.max(t.len());
            prev = t;
        }
        for n in path {
            nodes[n].end = nodes.len() as u32;
        }
        TokenTrie {
            nodes,
            ids,
            max_depth,
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

    /// Number of trie nodes (for reporting the cost of a walk).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
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
            .nodes
            .iter()
            .map(|n| {
                let ids = t.ids[n.ids_start as usize..n.ids_end as usize].to_vec();
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
        assert_eq!(t.max_depth, 3);
        assert_eq!(t.token_bytes(4), Some(&b"abc"[..]));
        assert_eq!(t.token_bytes(2), None);
        assert_eq!(t.token_bytes(6), None);
        assert_eq!(t.token_bytes(99), None);
    }
}
