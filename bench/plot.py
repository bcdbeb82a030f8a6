"""Plots of one benchmark run: throughput vs relays, latency vs load, cost vs backlog."""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

tsv, out = sys.argv[1], sys.argv[2]
v = {}
for line in open(tsv):
    k, x = line.rstrip("\n").split("\t")
    v[k] = float(x)

# Throughput vs relays, beside the limits.
fig, ax = plt.subplots(figsize=(6, 4))
relays = [k for k in (1, 2, 4) if f"relay_x{k}" in v]
ax.plot(relays, [v[f"relay_x{k}"] for k in relays], "o-", label="txbox-relay")
eos = [k for k in (1, 2, 4) if f"relay_eos_x{k}" in v]
if eos:
    ax.plot(eos, [v[f"relay_eos_x{k}"] for k in eos], "s--", label="txbox-relay, exactly_once")
limit = min(v["raw_drain"], v["raw_produce"])
ax.axhline(v["raw_drain"], ls="--", c="grey", label="raw claim+delete drain")
ax.axhline(v["raw_produce"], ls=":", c="black", label="raw produce (acks=all, idempotent)")
ax.axhline(0.5 * limit, ls="-.", c="red", label="target: 0.5× min(raw)")
# Each peer its own colour (none of the ones above) and a label with its figure.
peer_colors = ["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]
peers = sorted(k for k in v if k.startswith("peer_"))
for i, k in enumerate(peers):
    ax.axhline(v[k], c=peer_colors[i % len(peer_colors)], lw=1.5,
               ls=("-", "--", "-.", ":")[(i // len(peer_colors)) % 4],
               label=f"peer: {k[5:].replace('_', ' ')} ({v[k]:,.0f}/s)")
ax.set_xticks(relays)
ax.set_xlabel("relays")
ax.set_ylabel("messages/s")
ax.set_ylim(bottom=0)
ax.set_title("Throughput vs relays")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(f"{out}/bench-throughput.png", dpi=100)

# Latency percentiles vs load.
fig, ax = plt.subplots(figsize=(6, 4))
loads = [10, 50, 90]
styles = {"p50": "o", "p99": "s", "p999": "^"}
for mode, color in (("notify", "tab:blue"), ("poll", "tab:green")):
    for p, m in styles.items():
        ys = [v.get(f"e2e_{mode}_{l}_{p}") for l in loads]
        ax.plot(loads, ys, marker=m, c=color, ls="-" if mode == "notify" else "--",
                label=f"commit→handler {p}, {'NOTIFY' if mode == 'notify' else 'poll only'}")
for p, m in (("p50", "o"), ("p99", "s")):
    ax.plot(loads, [v.get(f"raw_lat_{l}_{p}") for l in loads], marker=m, c="grey", ls=":",
            label=f"raw produce→consume {p}")
ax.set_yscale("log")
ax.set_xlabel(f"load, % of {v['e2e_max_rate']:.0f} msg/s")
ax.set_ylabel("ms")
ax.set_title("Latency vs load")
ax.legend(fontsize=6)
fig.tight_layout()
fig.savefig(f"{out}/bench-latency.png", dpi=100)

# Cost per message vs backlog.
backlogs = sorted(int(k.split("_")[1]) for k in v if k.startswith("cost_") and k.endswith("_us")
                  and not k.endswith("cpu_us"))
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(backlogs, [v[f"cost_{b}_us"] for b in backlogs], "o-", label="wall µs per message")
ax.plot(backlogs, [v[f"cost_{b}_cpu_us"] for b in backlogs], "s--", label="relay CPU µs per message")
if backlogs:
    ax.axhline(1.2 * v[f"cost_{backlogs[0]}_us"], ls="-.", c="red", label="target: 1.2× cost at 10k")
ax.set_xscale("log")
ax.set_xlabel("pending rows")
ax.set_ylabel("µs")
ax.set_ylim(bottom=0)
ax.set_title("Relay cost per message vs backlog (1 relay)")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(f"{out}/bench-backlog.png", dpi=100)
print(f"wrote {out}/bench-throughput.png, bench-latency.png, bench-backlog.png")
