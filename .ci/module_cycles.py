"""File-level `use` graph of every crate under crates/: reports each cycle
between source files (a `crate::`/`super::` path, a re-export followed to
the file that defines the item, or a crate root's use of its own child).
Usage: python3 .ci/module_cycles.py REPO_ROOT; exits 1 when there is one.
DBG=<crate> prints that crate's edges."""
import os, re, sys
root = sys.argv[1]
bad = 0
for crate in sorted(os.listdir(os.path.join(root, 'crates'))):
    src = os.path.join(root, 'crates', crate, 'src')
    if not os.path.isdir(src): continue
    files = {}
    for dp, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith('.rs'): continue
            p = os.path.join(dp, f); rel = os.path.relpath(p, src)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
            files[tuple(parts)] = p
    reexp = {}
    for mod, p in files.items():
        t = open(p).read()
        for m in re.finditer(r'pub(?:\([^)]*\))?\s+use\s+(?:self::)?(\w+)((?:::\w+)*)::(?:\{([^}]*)\}|(\w+))\s*;', t):
            child = [m.group(1)] + [x for x in m.group(2).split('::') if x]
            names = re.findall(r'\b(\w+)\b', m.group(3)) if m.group(3) else [m.group(4)]
            for n in names:
                reexp[(mod, n)] = list(mod) + child
    def resolve(path):
        for k in range(len(path), -1, -1):
            if tuple(path[:k]) in files:
                m = tuple(path[:k])
                if k < len(path) and (m, path[k]) in reexp:
                    return resolve(reexp[(m, path[k])] + [path[k]] + path[k+1:])
                return m
        return None
    edges = {m: set() for m in files}
    for mod, p in files.items():
        text = open(p).read()
        text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
        is_dir_mod = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
        parent = list(mod) if is_dir_mod else list(mod[:-1])
        # expand `use a::{b, c::{d}}` roughly: take every path token chain
        for m in re.finditer(r'(?<!\()\b(crate|super)(?=::)((?:::\w+)*)', text):
            segs = [x for x in m.group(2).split('::') if x]
            if m.group(1) == 'crate': base = []
            else:
                base = parent[:-1] if is_dir_mod else list(mod[:-2]) if False else parent[:-1] if is_dir_mod else list(mod[:-1])[:-0 or None]
                base = (list(mod[:-1]) if is_dir_mod else list(mod[:-1]))
                # `super` from file a/b.rs (mod a::b) is a; from a/mod.rs (mod a) is crate root
                base = list(mod[:-1])
            segs2 = [s for s in segs]
            tgt = resolve(base + segs2)
            # braces: `use crate::a::{b, c}` -> edges to a::b, a::c
            after = text[m.end():m.end()+400]
            if after.startswith('::{'):
                inner = after[3:after.index('}')] if '}' in after else ''
                for name in re.findall(r'\b(\w+)\b', inner):
                    t = resolve(base + segs2 + [name])
                    if t is not None and t != mod: edges[mod].add(t)
            if tgt is not None and tgt != mod and not after.startswith("::{"): edges[mod].add(tgt)
    # bare references to child modules from the file that declares them
    for mod, p in files.items():
        text = re.split(r'#\[cfg\(test\)\]\s*mod tests', open(p).read())[0]
        is_dir_mod = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
        if not is_dir_mod: continue
        for child in re.findall(r'^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;', text, re.M):
            # not after `.`: `x.parse::<T>()` calls a method, it names no module
            for m in re.finditer(r'(?<![:\w.])' + child + r'((?:::\w+)*)::', text):
                t = resolve(list(mod) + [child] + [x for x in m.group(1).split('::') if x])
                if t is not None and t != mod: edges[mod].add(t)
            for m in re.finditer(r'(?<![:\w.])' + child + r'::\{([^}]*)\}', text):
                for name in re.findall(r'\b(\w+)\b', m.group(1)):
                    t = resolve(list(mod) + [child, name])
                    if t is not None and t != mod: edges[mod].add(t)
    if os.environ.get("DBG") == crate:
        for k, v in edges.items(): print(k, "->", sorted(v))
    # cycles: DFS
    idx = {}; low = {}; st = []; on = set(); out = []; c = [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        idx[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
        for w in edges[v]:
            if w not in idx: strong(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], idx[w])
        if low[v] == idx[v]:
            comp = []
            while True:
                w = st.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(comp)
    for v in edges:
        if v not in idx: strong(v)
    for comp in out:
        bad += 1
        print(crate, 'cycle:', ' <-> '.join('/'.join(x) or 'lib' for x in comp))
print('cycles:', bad)
sys.exit(1 if bad else 0)
