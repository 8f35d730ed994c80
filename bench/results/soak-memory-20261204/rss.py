"""RSS at minute marks and least-squares slopes per window, from a soak.md's Samples table."""
import sys
def load(path):
    rows=[]
    for l in open(path):
        p=[x.strip() for x in l.strip().strip('|').split('|')]
        if len(p)==10 and p[0].isdigit():
            rows.append((int(p[0]), float(p[1])))
    return rows
def slope(pts):
    n=len(pts); mx=sum(t for t,_ in pts)/n; my=sum(r for _,r in pts)/n
    sxx=sum((t-mx)**2 for t,_ in pts)
    return sum((t-mx)*(r-my) for t,r in pts)/sxx*60
for path in sys.argv[1:]:
    rows=load(path); end=rows[-1][0]
    marks=[m for m in (2,5,10,15,20,25,30,40,50,60) if m*60<=end]
    at={m: next(r for t,r in rows if t>=m*60) for m in marks}
    print(path, "RSS at min:", " ".join(f"{m}:{at[m]:.1f}" for m in marks))
    wins=[(a,b) for a,b in ((2,10),(6,30),(10,20),(20,30),(6,15),(10,30),(12,60),(30,60)) if b*60<=end]
    print("   slopes MiB/min:", " ".join(f"[{a}-{b}]{slope([(t,r) for t,r in rows if a*60<=t<=b*60]):+.3f}" for a,b in wins))
