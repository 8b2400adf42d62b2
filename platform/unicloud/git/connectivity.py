"""Check that a pushed tip is complete and well-formed before any ref points at it.

dulwich stores the received pack as soon as its checksum verifies; like git's `check_connected`,
we then walk every object that is new relative to the existing refs, so a pack that lacks a tree
or blob (or holds a malformed commit/tree) is refused and no ref ever names a broken history.
"""

from __future__ import annotations

from dulwich.errors import ObjectFormatException
from dulwich.objects import S_ISGITLINK, Commit, Tag, Tree
from dulwich.repo import Repo


class BrokenPush(Exception):
    """The pushed objects are incomplete or malformed; the message is shown to the pusher."""


def _known_commits(repo: Repo, exclude_ref: bytes | None = None) -> set[bytes]:
    """Commits reachable from the current refs: those were verified when they were pushed."""
    tips = []
    for name, sha in repo.refs.as_dict().items():
        if name == exclude_ref:
            continue
        obj = repo.object_store[sha] if sha in repo.object_store else None
        while isinstance(obj, Tag):
            obj = repo.object_store[obj.object[1]] if obj.object[1] in repo.object_store else None
        if isinstance(obj, Commit):
            tips.append(obj.id)
    provider = repo.object_store.get_reachability_provider()
    return set(provider.get_reachable_commits(tips, exclude=None, shallow=set())) if tips else set()


def check_connected(repo: Repo, new: bytes) -> str:
    """Verify every object reachable from `new` exists and parses. Returns the object's type name.

    Raises BrokenPush with the first problem found.
    """
    store = repo.object_store
    known = _known_commits(repo)

    def load(sha: bytes, what: str):
        if sha not in store:
            raise BrokenPush(f"missing {what} {sha.decode()[:12]}: the pack is incomplete (try `git push` again)")
        obj = store[sha]
        try:
            obj.check()
        except ObjectFormatException as exc:
            raise BrokenPush(f"malformed {obj.type_name.decode()} {sha.decode()[:12]}: {exc}") from None
        return obj

    top = load(new, "object")
    seen_trees: set[bytes] = set()
    pending_commits: list[bytes] = []
    obj = top
    while isinstance(obj, Tag):
        obj = load(obj.object[1], "tagged object")
    if isinstance(obj, Commit):
        pending_commits.append(obj.id)
    elif isinstance(obj, Tree):
        _walk_tree(load, obj, seen_trees, store)
    seen_commits: set[bytes] = set()
    while pending_commits:
        sha = pending_commits.pop()
        if sha in seen_commits or sha in known:
            continue
        seen_commits.add(sha)
        commit = load(sha, "commit")
        if not isinstance(commit, Commit):
            raise BrokenPush(f"object {sha.decode()[:12]} should be a commit but is a {commit.type_name.decode()}")
        tree = load(commit.tree, "tree")
        if not isinstance(tree, Tree):
            raise BrokenPush(f"commit {sha.decode()[:12]} points at a {tree.type_name.decode()}, not a tree")
        _walk_tree(load, tree, seen_trees, store)
        pending_commits.extend(commit.parents)
    return top.type_name.decode()


def _walk_tree(load, tree: Tree, seen_trees: set[bytes], store) -> None:
    stack = [tree]
    while stack:
        t = stack.pop()
        if t.id in seen_trees:
            continue
        seen_trees.add(t.id)
        for entry in t.iteritems():
            if S_ISGITLINK(entry.mode):
                continue  # submodule commit: lives in another repository
            if entry.mode & 0o170000 == 0o040000:
                if entry.sha not in seen_trees:
                    sub = load(entry.sha, "tree")
                    if not isinstance(sub, Tree):
                        raise BrokenPush(f"tree entry {entry.path!r} should be a tree but is a {sub.type_name.decode()}")
                    stack.append(sub)
            elif entry.sha not in store:
                raise BrokenPush(f"missing blob {entry.sha.decode()[:12]} ({entry.path.decode(errors='replace')}): the pack is incomplete")
