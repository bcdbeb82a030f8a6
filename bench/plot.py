"""Plots of one benchmark run: throughput vs relays, latency vs load, cost vs backlog, and the
outbox's size over the big backlog run (--10m / --big)."""
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
# The limit each relay figure is compared with: min(Kafka's ProducerPerformance, raw drain).
limit = v.get("limit", min(v["raw_drain"], v["raw_produce"]))
ax.axhline(limit, ls="-", c="black", lw=2, label=f"limit: min(ProducerPerformance, raw drain) ({limit:,.0f}/s)")
ax.axhline(0.9 * limit, ls="-.", c="red", label="target for ×1: 0.9× limit")
ax.axhline(v["raw_drain"], ls="--", c="grey", label=f"raw claim+delete drain ({v['raw_drain']:,.0f}/s)")
if "producer_perf_6p" in v:
    ax.axhline(v["producer_perf_6p"], ls=":", c="black",
               label=f"Kafka ProducerPerformance, 6 partitions ({v['producer_perf_6p']:,.0f}/s)")
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

# Latency percentiles vs load, as % of the end-to-end capacity; hollow markers: overloaded
# (the writers reached less than 95% of the offered rate, or messages did not arrive).
fig, ax = plt.subplots(figsize=(6, 5.5))
loads = [l for l in (10, 50, 80) if f"e2e_notify_{l}_p50" in v]
styles = {"p50": "o", "p99": "s", "p999": "^"}
for mode, color in (("probe", "tab:blue"), ("notify", "tab:green")):
    for p, m in styles.items():
        ys = [v.get(f"e2e_{mode}_{l}_{p}") for l in loads]
        ax.plot(loads, ys, marker=m, c=color, ls="-" if mode == "probe" else "--",
                label=f"commit→handler {p}, {'probe (V6)' if mode == 'probe' else 'NOTIFY (V5)'}")
        for l, y in zip(loads, ys):
            if v.get(f"e2e_{mode}_{l}_overloaded", 0) > 0:
                ax.plot([l], [y], marker=m, c=color, mfc="white")
if "raw_lat_p99" in v:
    ax.plot([50], [v["raw_lat_p99"]], "D", c="grey", label="raw produce→consume p99 (50%)")
if "e2e_target_ms" in v:
    ax.plot([50], [v["e2e_target_ms"]], "_", c="red", ms=30, mew=2,
            label="target at 50%: 3× raw p99 + 1 commit")
ax.set_xticks(loads)
ax.set_yscale("log")
ax.set_xlabel(f"load, % of the end-to-end capacity ({v.get('e2e_capacity', 0):,.0f} msg/s)")
ax.set_ylabel("ms")
ax.set_title("Latency vs load (hollow: overloaded)")
ax.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
fig.tight_layout()
fig.savefig(f"{out}/bench-latency.png", dpi=100)

# Cost per message vs backlog: SQL fills (the first 100k drained), and the paced fill through
# enqueue (all drained) at 10k and at the big backlog.
backlogs = sorted(int(k.split("_")[1]) for k in v if k.startswith("cost_") and k.endswith("_us")
                  and not k.endswith("cpu_us"))
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(backlogs, [v[f"cost_{b}_us"] for b in backlogs], "o-", c="tab:blue",
        label="wall µs per message, SQL fill")
ax.plot(backlogs, [v[f"cost_{b}_cpu_us"] for b in backlogs], "s--", c="tab:blue",
        label="relay CPU µs per message, SQL fill")
if "big_us" in v:
    paced = [10000, int(v["big_n"])]
    ax.plot(paced, [v["big_base_us"], v["big_us"]], "o-", c="tab:orange",
            label="wall µs per message, enqueue (10k: one tx; big: paced fill)")
    ax.plot(paced, [v["big_base_cpu_us"], v["big_cpu_us"]], "s--", c="tab:orange",
            label="relay CPU µs per message, enqueue")
    ax.axhline(1.2 * v["big_base_us"], ls="-.", c="red", label="target: 1.2× enqueue 10k")
ax.set_xscale("log")
ax.set_xlabel("pending rows")
ax.set_ylabel("µs")
ax.set_ylim(bottom=0)
ax.set_title("Relay cost per message vs backlog (1 relay)")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(f"{out}/bench-backlog.png", dpi=100)
wrote = ["bench-throughput.png", "bench-latency.png", "bench-backlog.png"]

# The outbox's size over the big backlog run: table and indexes, messages pending.
samples = sorted(int(k[5:-2]) for k in v if k.startswith("big_s") and k.endswith("_t"))
if samples:
    t = [v[f"big_s{i}_t"] for i in samples]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(t, [v[f"big_s{i}_table_mib"] for i in samples], "-", label="table (pg_relation_size)")
    ax.plot(t, [v[f"big_s{i}_index_mib"] for i in samples], "--", label="indexes (pg_indexes_size)")
    ax.plot(t, [v[f"big_s{i}_total_mib"] for i in samples], ":", c="black",
            label="total (pg_total_relation_size)")
    filled = v.get("big_filled_sample")
    if filled is not None:
        ax.axvline(v[f"big_s{int(filled)}_t"], c="grey", lw=1, label="fill done, relay starts")
    ax.set_xlabel("s")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(t, [v[f"big_s{i}_pending"] / 1e6 for i in samples], c="tab:red", alpha=0.5,
             label="pending (millions)")
    ax2.plot(t, [v[f"big_s{i}_dead"] / 1e6 for i in samples], c="tab:purple", alpha=0.5,
             ls="-.", label="n_dead_tup (millions)")
    ax2.set_ylabel("rows, millions")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="upper left")
    ax.set_title(f"Outbox size over the {int(v['big_n']):,} message backlog")
    fig.tight_layout()
    fig.savefig(f"{out}/bench-backlog-size.png", dpi=100)
    wrote.append("bench-backlog-size.png")
print(f"wrote {out}/: {', '.join(wrote)}")
