"""Summarize a memdiag caches.jsonl: table at each sample + slopes after warm-up."""
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
warm = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
cols = ["t", "VmRSS_mib", "RssAnon_mib", "py_blocks", "gc_objects", "arena_mib", "in_use_mib", "free_mib", "timelines", "verdict_entries", "verdicts", "slots_of", "sink_grants", "decision_items", "pseudonym_memo", "pids", "provided", "view_bytes", "gate_obs", "unsettled_logged"]
print(" ".join(f"{c[:10]:>10}" for c in cols))
for r in rows:
    print(" ".join(f"{r.get(c, float('nan')):>10}" if not isinstance(r.get(c), float) else f"{r[c]:>10.1f}" for c in cols))
def slope(xs, ys):
    n=len(xs); mx=sum(xs)/n; my=sum(ys)/n
    sxx=sum((x-mx)**2 for x in xs)
    return sum((x-mx)*(y-my) for x,y in zip(xs,ys))/sxx if sxx else float('nan')
tmax = rows[-1]["t"]
after = [r for r in rows if r["t"] >= warm * tmax]
ts = [r["t"]/60 for r in after]
print(f"\nafter t >= {warm*tmax:.0f} s ({len(after)} samples), slopes per minute:")
for c in ["VmRSS_mib", "RssAnon_mib", "py_blocks", "gc_objects", "arena_mib", "in_use_mib", "timelines", "verdict_entries", "slots_of", "sink_grants", "decision_items", "view_bytes"]:
    ys = [r.get(c, 0) for r in after]
    print(f"  {c:>16}: {slope(ts, ys):+.3f}/min")
tl = [r["timelines"] for r in after]
rss = [r["VmRSS_mib"] for r in after]
if max(tl) > min(tl):
    print(f"  RSS per new timeline entry: {slope(tl, rss)*1024:.1f} KiB; py_blocks per entry {slope(tl, [r['py_blocks'] for r in after]):.0f}")
