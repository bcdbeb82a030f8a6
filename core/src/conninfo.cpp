#include "txbox/conninfo.hpp"

#include <algorithm>
#include <cctype>

namespace txbox {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// URI form: postgresql://user:secret@host/db?password=secret
std::string redact_uri(std::string_view uri) {
  std::string out(uri);
  const auto scheme_end = out.find("://");
  const auto auth_start = scheme_end + 3;
  const auto auth_end = out.find_first_of("/?#", auth_start);
  const auto at = out.rfind('@', auth_end == std::string::npos ? out.size() : auth_end);
  if (at != std::string::npos && at > auth_start) {
    const auto colon = out.find(':', auth_start);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  // Query parameters named password (or anything secret).
  auto q = out.find('?');
  while (q != std::string::npos && q < out.size()) {
    const auto start = q + 1;
    const auto eq = out.find('=', start);
    auto end = out.find('&', start);
    if (eq == std::string::npos) break;
    if (end == std::string::npos) end = out.size();
    if (eq < end && is_secret_key(out.substr(start, eq - start))) {
      out.replace(eq + 1, end - eq - 1, "***");
      end = eq + 4;
    }
    q = end < out.size() ? end : std::string::npos;
  }
  return out;
}

// Keyword form: host=x password='a b\'c' user=y
std::string redact_keywords(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) {
      out.push_back(s[i++]);
      continue;
    }
    const auto eq = s.find('=', i);
    if (eq == std::string_view::npos) {
      out.append(s.substr(i));
      break;
    }
    std::string key(s.substr(i, eq - i));
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
    out.append(s.substr(i, eq + 1 - i));
    i = eq + 1;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) out.push_back(s[i++]);
    const std::size_t vstart = i;
    if (i < s.size() && s[i] == '\'') {
      ++i;
      while (i < s.size() && s[i] != '\'') i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
      if (i < s.size()) ++i;
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) {
        i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
      }
    }
    if (is_secret_key(key)) {
      out.append("***");
    } else {
      out.append(s.substr(vstart, std::min(i, s.size()) - vstart));
    }
  }
  return out;
}

}  // namespace

bool is_secret_key(std::string_view key) noexcept {
  const std::string k = lower(key);
  return k.find("password") != std::string::npos || k.find("secret") != std::string::npos ||
         k.find("token") != std::string::npos || k.rfind("sasl.", 0) == 0 ||
         k.rfind("ssl.key.", 0) == 0 || k == "passfile";
}

std::string redact_conninfo(std::string_view conninfo) {
  const auto scheme = conninfo.find("://");
  if (scheme != std::string_view::npos &&
      conninfo.substr(0, scheme).find_first_of(" =") == std::string_view::npos) {
    return redact_uri(conninfo);
  }
  return redact_keywords(conninfo);
}

}  // namespace txbox
