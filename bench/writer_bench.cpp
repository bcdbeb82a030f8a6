// The writers' commit ceiling (issue 24): N concurrent writers, each on its own connection,
// commit business transactions (one order row, then its outbox messages) on durable PostgreSQL;
// tx/s per arm and concurrency, against the same transactions with a plain INSERT into a copy
// of the outbox table. The arms of one group (messages per tx × writers) take turns slice by
// slice on the same connections, so that the load of a shared machine falls on all of them
// alike. Run through bench/writers.sh. Prints Markdown tables on stdout, one progress line per
// cell on stderr.
//   writer_bench PG --v6 SCHEMA --v5 SCHEMA [--admin CONNINFO] [--seconds S] [--slice S]
//     [--settle S] [--warmup S] [--writers 1,8,32,64] [--msgs 1,10] [--arms a,b,...]
//     [--keys N] [--payload BYTES] [--commit TEXT]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <regex>
#include <sstream>

#include "txbox/detail/pq.hpp"
#include "writer_bench.hpp"

namespace pq = txbox::pq;

namespace {

using namespace wb;

using CellKey = std::tuple<std::string, int, int>;  // arm, messages per tx, writers

std::string now_utc(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

void say(const std::string& line) {
  std::fprintf(stderr, "[writer_bench %s] %s\n", now_utc("%H:%M:%S").c_str(), line.c_str());
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<int> split_ints(const std::string& s) {
  std::vector<int> out;
  for (const std::string& item : split(s)) out.push_back(std::stoi(item));
  return out;
}

Options parse(int argc, char** argv) {
  if (argc < 2 || argc % 2 != 0) throw std::invalid_argument("arguments");
  Options o;
  o.pg = argv[1];
  using Setter = std::function<void(const std::string&)>;
  const std::map<std::string, Setter> set{
      {"--v6", [&](const std::string& v) { o.v6 = v; }},
      {"--v5", [&](const std::string& v) { o.v5 = v; }},
      {"--admin", [&](const std::string& v) { o.admin = v; }},
      {"--seconds", [&](const std::string& v) { o.seconds = std::stod(v); }},
      {"--slice", [&](const std::string& v) { o.slice = std::stod(v); }},
      {"--settle", [&](const std::string& v) { o.settle = std::stod(v); }},
      {"--warmup", [&](const std::string& v) { o.warmup = std::stod(v); }},
      {"--writers", [&](const std::string& v) { o.writers = split_ints(v); }},
      {"--msgs", [&](const std::string& v) { o.msgs = split_ints(v); }},
      {"--arms", [&](const std::string& v) { o.arms = split(v); }},
      {"--keys", [&](const std::string& v) { o.keys = std::stoi(v); }},
      {"--payload", [&](const std::string& v) { o.payload = std::stoi(v); }},
      {"--commit", [&](const std::string& v) { o.commit = v; }},
  };
  for (int i = 2; i + 1 < argc; i += 2) {
    const auto it = set.find(argv[i]);
    if (it == set.end()) throw std::invalid_argument(argv[i]);
    it->second(argv[i + 1]);
  }
  static const std::regex ident("[a-z_][a-z0-9_]{0,62}");
  if (!std::regex_match(o.v6, ident) || !std::regex_match(o.v5, ident)) {
    throw std::invalid_argument("--v6 and --v5 need plain schema names");
  }
  if (o.slice <= 0 || o.seconds < o.slice || o.keys < 1 || o.writers.empty() || o.msgs.empty()) {
    throw std::invalid_argument("--slice, --seconds, --keys, --writers, --msgs");
  }
  return o;
}

std::string thousands(double x) {
  const std::string digits = fmt::format("{:.0f}", x);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// "1,234 (0.97×)": a cell's tx/s and its ratio to the plain arm's.
std::string cell_text(const std::map<CellKey, Cell>& cells, const Arm& arm, int n, int w) {
  const auto it = cells.find({arm.name, n, w});
  if (it == cells.end()) return "";
  std::string out = thousands(it->second.tps());
  const auto base = cells.find({"plain", n, w});
  if (arm.name != "plain" && base != cells.end() && base->second.tps() > 0) {
    out += fmt::format(" ({:.2f}×)", it->second.tps() / base->second.tps());
  }
  if (it->second.errors) out += fmt::format(" [{} errors]", it->second.errors);
  return out;
}

// One table: a row per arm and messages per tx, a column per number of writers.
template <typename F>
void print_table(const std::string& title, const Options& o, const std::vector<Arm>& arms,
                 const std::map<CellKey, Cell>& cells, F cell_fn) {
  std::cout << title << "\n\n| arm | msgs/tx |";
  for (const int w : o.writers) std::cout << fmt::format(" {} writer{} |", w, w == 1 ? "" : "s");
  std::cout << "\n|---|---:|";
  for (std::size_t i = 0; i < o.writers.size(); ++i) std::cout << "---:|";
  std::cout << "\n";
  for (const int n : o.msgs) {
    for (const Arm& arm : arms) {
      std::cout << "| " << arm.label << " | " << n << " |";
      for (const int w : o.writers) {
        const auto it = cells.find({arm.name, n, w});
        std::cout << " " << (it == cells.end() ? "" : cell_fn(arm, n, w, it->second)) << " |";
      }
      std::cout << "\n";
    }
  }
  std::cout << "\n";
}

// "4,120-5,301": the range of a cell's slices.
std::string slices_text(const Cell& cell) {
  if (cell.slice_tps.empty()) return "-";
  const auto [lo, hi] = std::minmax_element(cell.slice_tps.begin(), cell.slice_tps.end());
  return thousands(*lo) + "-" + thousands(*hi);
}

void print_tables(const Options& o, const std::vector<Arm>& arms,
                  const std::map<CellKey, Cell>& cells) {
  print_table(
      "Commits per second (ratio to the plain INSERT with the same writers and messages "
      "per tx)",
      o, arms, cells,
      [&](const Arm& arm, int n, int w, const Cell&) { return cell_text(cells, arm, n, w); });
  print_table(
      "What the writers' backends were doing (pg_stat_activity every 20 ms: the top 3, then any "
      "other lock wait of 1% or more)",
      o, arms, cells, [](const Arm&, int, int, const Cell& c) { return top_waits(c.waits, 3); });
  print_table(
      "Per transaction: CPU µs of the writers' backends + of the writers (the bench "
      "process: libpq, txbox::Outbox), and WAL bytes",
      o, arms, cells, [](const Arm&, int, int, const Cell& c) {
        return fmt::format("{:.0f} + {:.0f} µs, {:.0f} B", c.per_tx(c.server) * 1e6,
                           c.per_tx(c.client) * 1e6, c.per_tx(c.wal));
      });
  for (const auto& [key, cell] : cells) {
    if (cell.errors) {
      std::cout << fmt::format("{} msgs/tx {} writers {}: {} errors, the first: {}\n",
                               std::get<1>(key), std::get<2>(key), std::get<0>(key), cell.errors,
                               cell.first_error);
    }
  }
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

void print_header(const Options& o, pqxx::connection& db) {
  pqxx::nontransaction q(db);
  const auto show = [&](const char* name) {
    return pq::exec1(q, "SELECT current_setting($1)", std::string(name))[0].as<std::string>();
  };
  std::cout << fmt::format(
      "Writers' commit ceiling, run of {} on {} cores (load average at start {}), commit {}. "
      "PostgreSQL {}, fsync={}, synchronous_commit={}, wal_sync_method={}, shared_buffers={}. "
      "Each cell {} s, in slices of {} s: the arms of one group (messages per tx × writers) take "
      "turns slice by slice on the same connections (at each switch the last arm's transactions "
      "end, then {} s to settle, not "
      "measured; {} s of warm-up per arm), tables emptied between turns, CHECKPOINT before "
      "each group. Each writer one thread and one connection; each transaction one order row + "
      "its messages ({} bytes of payload each, keys random among {}), committed.\n\n",
      now_utc("%Y-%m-%d %H:%M UTC"), std::thread::hardware_concurrency(), load_average(),
      o.commit.empty() ? "?" : o.commit, show("server_version"), show("fsync"),
      show("synchronous_commit"), show("wal_sync_method"), show("shared_buffers"), o.seconds,
      o.slice, o.settle, o.warmup, o.payload, o.keys);
}

std::vector<Arm> chosen_arms(const Options& o) {
  std::vector<Arm> arms = make_arms(o);
  if (o.arms.empty()) return arms;
  std::vector<Arm> out;
  for (const Arm& a : arms) {
    if (a.name == "plain" || std::find(o.arms.begin(), o.arms.end(), a.name) != o.arms.end()) {
      out.push_back(a);
    }
  }
  return out;
}

void report_group(const std::vector<Arm>& arms, int n, int w,
                  const std::map<CellKey, Cell>& cells) {
  for (const Arm& arm : arms) {
    const Cell& c = cells.at({arm.name, n, w});
    say(fmt::format(
        "{} msgs/tx, {} writers, {}: {} tx/s (slices {}), {:.0f}+{:.0f} us CPU "
        "(server+client) and {:.0f} B WAL per tx | {}",
        n, w, arm.label, cell_text(cells, arm, n, w), slices_text(c), c.per_tx(c.server) * 1e6,
        c.per_tx(c.client) * 1e6, c.per_tx(c.wal), top_waits(c.waits, 6)));
  }
}

// One group: every arm once to warm up, then turns of one slice per arm (the order rotating
// from turn to turn), with the tables emptied between turns.
void run_group(const Options& o, pqxx::connection& db, pqxx::connection* admin,
               const std::vector<Arm>& arms, int n, int w, WaitSampler& sampler,
               std::map<CellKey, Cell>& cells) {
  reset_tables(db, admin, o);
  Group group(o, arms, n, w);
  for (std::size_t a = 0; a < arms.size(); ++a) group.run_slice(a, o.warmup, db, sampler, nullptr);
  const auto turns = static_cast<std::size_t>(std::ceil(o.seconds / o.slice - 1e-9));
  for (std::size_t t = 0; t < turns; ++t) {
    group.pause();
    reset_tables(db, nullptr, o);
    for (std::size_t i = 0; i < arms.size(); ++i) {
      const Arm& arm = arms[(i + t) % arms.size()];
      group.run_slice((i + t) % arms.size(), o.slice, db, sampler, &cells[{arm.name, n, w}]);
    }
  }
  group.pause();
  report_group(arms, n, w, cells);
}

int run(const Options& o) {
  pqxx::connection db(o.pg);
  std::unique_ptr<pqxx::connection> admin;
  if (!o.admin.empty()) admin = std::make_unique<pqxx::connection>(o.admin);
  setup_tables(db, o);
  const std::vector<Arm> arms = chosen_arms(o);
  print_header(o, db);
  WaitSampler sampler(o.pg);
  std::map<CellKey, Cell> cells;
  for (const int n : o.msgs) {
    for (const int w : o.writers) run_group(o, db, admin.get(), arms, n, w, sampler, cells);
  }
  print_tables(o, arms, cells);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "writer_bench: %s\nusage: writer_bench PG --v6 SCHEMA --v5 SCHEMA [--admin "
                 "CONNINFO] [--seconds S] [--slice S] [--settle S] [--warmup S] [--writers "
                 "1,8,32,64] [--msgs 1,10] [--arms a,b,...] [--keys N] [--payload BYTES] "
                 "[--commit TEXT]\n",
                 e.what());
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "writer_bench: %s\n", e.what());
    return 1;
  }
}
