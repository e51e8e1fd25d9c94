//! The balanced tree that holds a sequence's runs in order: a counted B+tree in two arenas
//! (`Vec`s of leaves and of inner nodes, linked by `u32` indices). Leaves hold runs and are
//! linked to their neighbours; every node caches the counts of its subtree (all elements,
//! visible elements, UTF-16 units, UTF-8 bytes), so that a position in any of those measures
//! is found by one descent and the position of a leaf by one climb, both O(log n).
//!
//! All leaves are at the same depth. A node that grows past its capacity splits in two (the
//! root then gains a parent); a leaf that loses its last run (only rollback removes runs) is
//! unlinked, with any ancestor left empty, and a root with one child gives way to it.
//! Underfull nodes are not merged: runs are never removed outside rollback, so the tree does
//! not shrink in normal use.

use super::{Content, Counts, Run};

/// Runs per leaf before it splits in two.
#[cfg(not(test))]
pub(super) const MAX_RUNS: usize = 64;
#[cfg(test)]
pub(super) const MAX_RUNS: usize = 4;

/// Children per inner node before it splits in two.
#[cfg(not(test))]
const MAX_CHILDREN: usize = 16;
#[cfg(test)]
const MAX_CHILDREN: usize = 4;

/// Runs per leaf and children per inner node when a tree is built from a flat list.
const LOAD_RUNS: usize = MAX_RUNS * 3 / 4;
const LOAD_CHILDREN: usize = MAX_CHILDREN * 3 / 4;

/// No node (a root's parent, an end leaf's neighbour).
pub(super) const NONE: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(super) struct Leaf<C> {
    pub(super) runs: Vec<Run<C>>,
    counts: Counts,
    parent: u32,
    prev: u32,
    next: u32,
}

#[derive(Clone, Debug)]
struct Inner {
    children: Vec<u32>,
    counts: Counts,
    parent: u32,
    /// Whether the children are leaves (else inner nodes).
    leafy: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Tree<C> {
    leaves: Vec<Leaf<C>>,
    inners: Vec<Inner>,
    root: u32,
    /// Levels of inner nodes above the leaves (0: the root is a leaf).
    height: u32,
    first: u32,
    last: u32,
    free_leaves: Vec<u32>,
    free_inners: Vec<u32>,
}

impl<C> Default for Tree<C> {
    fn default() -> Self {
        Self {
            leaves: vec![Leaf {
                runs: Vec::new(),
                counts: Counts::default(),
                parent: NONE,
                prev: NONE,
                next: NONE,
            }],
            inners: Vec::new(),
            root: 0,
            height: 0,
            first: 0,
            last: 0,
            free_leaves: Vec::new(),
            free_inners: Vec::new(),
        }
    }
}

impl<C: Content> Tree<C> {
    /// Builds a tree holding `runs` in order, leaves and inner nodes three quarters full.
    pub(super) fn from_runs(runs: Vec<Run<C>>) -> Self {
        let mut tree = Self::default();
        if runs.is_empty() {
            return tree;
        }
        tree.leaves.clear();
        let mut runs = runs.into_iter().peekable();
        while runs.peek().is_some() {
            let chunk: Vec<Run<C>> = runs.by_ref().take(LOAD_RUNS).collect();
            let mut counts = Counts::default();
            for run in &chunk {
                counts.add(&run.counts());
            }
            let id = tree.leaves.len() as u32;
            tree.leaves.push(Leaf {
                runs: chunk,
                counts,
                parent: NONE,
                prev: id.checked_sub(1).unwrap_or(NONE),
                next: id + 1,
            });
        }
        let n = tree.leaves.len() as u32;
        tree.leaves[n as usize - 1].next = NONE;
        tree.last = n - 1;
        let mut level: Vec<u32> = (0..n).collect();
        let mut leafy = true;
        while level.len() > 1 {
            let mut up = Vec::with_capacity(level.len() / LOAD_CHILDREN + 1);
            for group in level.chunks(LOAD_CHILDREN) {
                let id = tree.inners.len() as u32;
                let mut counts = Counts::default();
                for &child in group {
                    counts.add(tree.node_counts(child, leafy));
                    tree.set_parent(child, leafy, id);
                }
                tree.inners.push(Inner {
                    children: group.to_vec(),
                    counts,
                    parent: NONE,
                    leafy,
                });
                up.push(id);
            }
            level = up;
            leafy = false;
            tree.height += 1;
        }
        tree.root = level[0];
        tree
    }

    /// The counts of the whole sequence.
    pub(super) fn counts(&self) -> &Counts {
        self.node_counts(self.root, self.height == 0)
    }

    pub(super) fn leaf(&self, leaf: u32) -> &Leaf<C> {
        &self.leaves[leaf as usize]
    }

    pub(super) fn leaf_mut(&mut self, leaf: u32) -> &mut Leaf<C> {
        &mut self.leaves[leaf as usize]
    }

    /// Levels of inner nodes above the leaves.
    #[cfg(test)]
    pub(super) fn height(&self) -> u32 {
        self.height
    }

    /// The first leaf, in order.
    pub(super) fn first(&self) -> u32 {
        self.first
    }

    /// The last leaf, in order.
    pub(super) fn last(&self) -> u32 {
        self.last
    }

    /// The leaf after `leaf`, or [`NONE`].
    pub(super) fn next(&self, leaf: u32) -> u32 {
        self.leaves[leaf as usize].next
    }

    /// The leaf before `leaf`, or [`NONE`].
    pub(super) fn prev(&self, leaf: u32) -> u32 {
        self.leaves[leaf as usize].prev
    }

    /// Every run, in order.
    pub(super) fn runs(&self) -> impl Iterator<Item = &Run<C>> {
        let mut leaf = self.first;
        std::iter::from_fn(move || {
            let l = self.leaves.get(leaf as usize)?;
            leaf = l.next;
            Some(&l.runs)
        })
        .flatten()
    }

    /// The leaf in which the measure `by` (summed over the leaves in order) first exceeds
    /// `x`, with what remains of `x` at its start and the counts of every leaf before it;
    /// `None` if `x` is not below the whole tree's measure.
    pub(super) fn seek(
        &self,
        mut x: u64,
        by: impl Fn(&Counts) -> u64,
    ) -> Option<(u32, u64, Counts)> {
        if x >= by(self.counts()) {
            return None;
        }
        let mut before = Counts::default();
        let mut node = self.root;
        for _ in 0..self.height {
            let inner = &self.inners[node as usize];
            let mut chosen = None;
            for &child in &inner.children {
                let c = self.node_counts(child, inner.leafy);
                let m = by(c);
                if x < m {
                    chosen = Some(child);
                    break;
                }
                x -= m;
                before.add(c);
            }
            node = chosen?;
        }
        Some((node, x, before))
    }

    /// The counts of every leaf before `leaf`.
    pub(super) fn before(&self, leaf: u32) -> Counts {
        let mut sum = Counts::default();
        let mut child = leaf;
        let mut parent = self.leaves[leaf as usize].parent;
        while parent != NONE {
            let inner = &self.inners[parent as usize];
            for &c in inner.children.iter().take_while(|&&c| c != child) {
                sum.add(self.node_counts(c, inner.leafy));
            }
            child = parent;
            parent = inner.parent;
        }
        sum
    }

    /// Adds `delta` to the counts of `leaf` and its ancestors.
    pub(super) fn add_counts(&mut self, leaf: u32, delta: &Counts) {
        self.leaves[leaf as usize].counts.add(delta);
        let mut p = self.leaves[leaf as usize].parent;
        while p != NONE {
            let inner = &mut self.inners[p as usize];
            inner.counts.add(delta);
            p = inner.parent;
        }
    }

    /// Subtracts `delta` from the counts of `leaf` and its ancestors.
    pub(super) fn sub_counts(&mut self, leaf: u32, delta: &Counts) {
        self.leaves[leaf as usize].counts.sub(delta);
        let mut p = self.leaves[leaf as usize].parent;
        while p != NONE {
            let inner = &mut self.inners[p as usize];
            inner.counts.sub(delta);
            p = inner.parent;
        }
    }

    /// Splits `leaf` in two if it holds more than [`MAX_RUNS`] runs. Returns the new leaf
    /// (which holds the upper half and follows `leaf`).
    pub(super) fn maybe_split(&mut self, leaf: u32) -> Option<u32> {
        if self.leaves[leaf as usize].runs.len() <= MAX_RUNS {
            return None;
        }
        let l = &mut self.leaves[leaf as usize];
        // Both halves fit their runs exactly (not the doubled capacity the overflowing push
        // left): most leaves are not edited again for a long time, so slack would stay.
        let moved = l.runs.split_off(l.runs.len() / 2);
        l.runs.shrink_to_fit();
        let mut counts = Counts::default();
        for run in &moved {
            counts.add(&run.counts());
        }
        l.counts.sub(&counts);
        let (next, parent) = (l.next, l.parent);
        let new = self.alloc_leaf(Leaf {
            runs: moved,
            counts,
            parent,
            prev: leaf,
            next,
        });
        self.leaves[leaf as usize].next = new;
        match next {
            NONE => self.last = new,
            n => self.leaves[n as usize].prev = new,
        }
        self.attach_after(leaf, new, true);
        Some(new)
    }

    /// Removes `leaf`, which holds no runs, unless it is the only leaf.
    pub(super) fn remove_leaf(&mut self, leaf: u32) {
        if self.height == 0 {
            return;
        }
        let l = &mut self.leaves[leaf as usize];
        let (prev, next, parent) = (l.prev, l.next, l.parent);
        l.runs = Vec::new();
        l.parent = NONE;
        match prev {
            NONE => self.first = next,
            p => self.leaves[p as usize].next = next,
        }
        match next {
            NONE => self.last = prev,
            n => self.leaves[n as usize].prev = prev,
        }
        self.free_leaves.push(leaf);
        self.detach(parent, leaf);
        while self.height > 0 && self.inners[self.root as usize].children.len() == 1 {
            let old = self.root;
            let only = self.inners[old as usize].children[0];
            self.inners[old as usize].children = Vec::new();
            self.free_inners.push(old);
            self.height -= 1;
            self.set_parent(only, self.height == 0, NONE);
            self.root = only;
        }
    }

    /// Removes `child` from `parent`'s children, and `parent` from its own if it is left
    /// empty.
    fn detach(&mut self, parent: u32, child: u32) {
        let inner = &mut self.inners[parent as usize];
        inner.children.retain(|&c| c != child);
        if inner.children.is_empty() && inner.parent != NONE {
            let up = inner.parent;
            inner.parent = NONE;
            self.free_inners.push(parent);
            self.detach(up, parent);
        }
    }

    /// Puts `new` right after `old` (both leaves if `leafy`, else inner nodes) in `old`'s
    /// parent, splitting the parent when it overflows; a new root if `old` was the root.
    fn attach_after(&mut self, old: u32, new: u32, leafy: bool) {
        let parent = if leafy {
            self.leaves[old as usize].parent
        } else {
            self.inners[old as usize].parent
        };
        if parent == NONE {
            let mut counts = self.node_counts(old, leafy).clone();
            counts.add(self.node_counts(new, leafy));
            let root = self.alloc_inner(Inner {
                children: vec![old, new],
                counts,
                parent: NONE,
                leafy,
            });
            self.set_parent(old, leafy, root);
            self.set_parent(new, leafy, root);
            self.root = root;
            self.height += 1;
            return;
        }
        self.set_parent(new, leafy, parent);
        let children = &mut self.inners[parent as usize].children;
        let slot = children
            .iter()
            .position(|&c| c == old)
            .map_or(children.len(), |s| s + 1);
        children.insert(slot, new);
        if children.len() > MAX_CHILDREN {
            self.split_inner(parent);
        }
    }

    fn split_inner(&mut self, node: u32) {
        let inner = &mut self.inners[node as usize];
        let moved = inner.children.split_off(inner.children.len() / 2);
        let (leafy, parent) = (inner.leafy, inner.parent);
        let new = self.alloc_inner(Inner {
            children: Vec::new(),
            counts: Counts::default(),
            parent,
            leafy,
        });
        let mut counts = Counts::default();
        for &child in &moved {
            counts.add(self.node_counts(child, leafy));
            self.set_parent(child, leafy, new);
        }
        self.inners[node as usize].counts.sub(&counts);
        let inner = &mut self.inners[new as usize];
        inner.children = moved;
        inner.counts = counts;
        self.attach_after(node, new, false);
    }

    fn alloc_leaf(&mut self, leaf: Leaf<C>) -> u32 {
        match self.free_leaves.pop() {
            Some(id) => {
                self.leaves[id as usize] = leaf;
                id
            }
            None => {
                self.leaves.push(leaf);
                self.leaves.len() as u32 - 1
            }
        }
    }

    fn alloc_inner(&mut self, inner: Inner) -> u32 {
        match self.free_inners.pop() {
            Some(id) => {
                self.inners[id as usize] = inner;
                id
            }
            None => {
                self.inners.push(inner);
                self.inners.len() as u32 - 1
            }
        }
    }

    fn node_counts(&self, node: u32, leafy: bool) -> &Counts {
        if leafy {
            &self.leaves[node as usize].counts
        } else {
            &self.inners[node as usize].counts
        }
    }

    fn set_parent(&mut self, node: u32, leafy: bool, parent: u32) {
        if leafy {
            self.leaves[node as usize].parent = parent;
        } else {
            self.inners[node as usize].parent = parent;
        }
    }

    /// Checks the tree's invariants: counts are the sums of their children's, parents and
    /// neighbour links agree with the structure, all leaves are at one depth, nodes are within
    /// capacity and only a lone root leaf is empty. Returns the leaves in order.
    #[cfg(test)]
    pub(super) fn check(&self) -> Vec<u32> {
        fn walk<C: Content>(
            tree: &Tree<C>,
            node: u32,
            depth: u32,
            leaves: &mut Vec<u32>,
        ) -> Counts {
            if depth == tree.height {
                let leaf = tree.leaf(node);
                assert!(leaf.runs.len() <= MAX_RUNS, "leaf {node} overflows");
                assert!(
                    !leaf.runs.is_empty() || tree.height == 0,
                    "leaf {node} is empty"
                );
                let mut sum = Counts::default();
                for run in &leaf.runs {
                    sum.add(&run.counts());
                }
                assert_eq!(sum, leaf.counts, "leaf {node}'s counts");
                leaves.push(node);
                return sum;
            }
            let inner = &tree.inners[node as usize];
            assert_eq!(inner.leafy, depth + 1 == tree.height, "inner {node}'s kind");
            assert!(!inner.children.is_empty(), "inner {node} is empty");
            assert!(
                inner.children.len() <= MAX_CHILDREN,
                "inner {node} overflows"
            );
            let mut sum = Counts::default();
            for &child in &inner.children {
                let parent = if inner.leafy {
                    tree.leaf(child).parent
                } else {
                    tree.inners[child as usize].parent
                };
                assert_eq!(parent, node, "parent of {child}");
                sum.add(&walk(tree, child, depth + 1, leaves));
            }
            assert_eq!(sum, inner.counts, "inner {node}'s counts");
            sum
        }
        let mut leaves = Vec::new();
        walk(self, self.root, 0, &mut leaves);
        if self.height > 0 {
            assert!(
                self.inners[self.root as usize].children.len() > 1,
                "root has one child"
            );
            assert_eq!(self.inners[self.root as usize].parent, NONE);
        } else {
            assert_eq!(self.leaf(self.root).parent, NONE);
        }
        assert_eq!(self.first, leaves[0]);
        assert_eq!(self.last, *leaves.last().unwrap_or(&NONE));
        for (i, &leaf) in leaves.iter().enumerate() {
            let prev = i.checked_sub(1).map_or(NONE, |p| leaves[p]);
            let next = leaves.get(i + 1).copied().unwrap_or(NONE);
            assert_eq!(
                (self.prev(leaf), self.next(leaf)),
                (prev, next),
                "links of {leaf}"
            );
        }
        assert_eq!(
            leaves.len() + self.free_leaves.len(),
            self.leaves.len(),
            "leaves lost"
        );
        leaves
    }
}
