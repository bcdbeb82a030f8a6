// Prometheus text exposition (format 0.0.4) for the relay's and the inbox's metrics.
// Internal, header-only.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

namespace txbox::detail {

/// Escapes a label value: backslash, double quote and newline.
inline std::string prom_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out;
}

/// Builds one exposition. `labels` arguments are the inside of the braces, already escaped
/// (e.g. `consumer="a"`), or empty.
class PromText {
 public:
  void header(const std::string& name, const char* type, const char* help) {
    m_out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(const std::string& name, const std::string& labels, const std::string& value) {
    m_out += labels.empty() ? fmt::format("{} {}\n", name, value)
                            : fmt::format("{}{{{}}} {}\n", name, labels, value);
  }
  /// A metric with one sample.
  void metric(const std::string& name, const char* type, const char* help,
              const std::string& labels, const std::string& value) {
    header(name, type, help);
    sample(name, labels, value);
  }
  /// A histogram from cumulative bucket counts.
  void histogram(const std::string& name, const char* help, const std::string& labels,
                 const std::vector<double>& bounds, const std::vector<std::uint64_t>& counts,
                 std::uint64_t count, double sum) {
    header(name, "histogram", help);
    const std::string sep = labels.empty() ? "" : ",";
    for (std::size_t b = 0; b < bounds.size() && b < counts.size(); ++b) {
      sample(name + "_bucket", fmt::format("{}{}le=\"{}\"", labels, sep, bounds[b]),
             std::to_string(counts[b]));
    }
    sample(name + "_bucket", fmt::format("{}{}le=\"+Inf\"", labels, sep), std::to_string(count));
    sample(name + "_sum", labels, fmt::format("{:.6f}", sum));
    sample(name + "_count", labels, std::to_string(count));
  }
  [[nodiscard]] const std::string& str() const { return m_out; }

 private:
  std::string m_out;
};

}  // namespace txbox::detail
