#include "txbox/conninfo.hpp"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "txbox/error.hpp"

namespace txbox {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Whether text mentions a secret anywhere (a key, or a key swallowed into a value).
bool looks_secret(std::string_view text) {
  const std::string t = lower(text);
  for (const char* word : {"password", "secret", "token", "sasl", "passfile", "ssl.key"}) {
    if (t.find(word) != std::string::npos) return true;
  }
  return false;
}

std::string percent_decoded(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() &&
        std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// URI form: postgresql://user:secret@host/db?password=secret
std::string redact_uri(std::string_view uri) {
  std::string out(uri);
  const auto auth_start = out.find("://") + 3;
  const auto auth_end = out.find_first_of("/?#", auth_start);
  const auto at = out.rfind('@', auth_end == std::string::npos ? out.size() : auth_end);
  std::size_t tail = auth_start;  // where host, path and query begin
  if (at != std::string::npos && at >= auth_start) {
    const auto colon = out.find(':', auth_start);
    if (colon != std::string::npos && colon < at) {
      out.replace(colon + 1, at - colon - 1, "***");
      tail = colon + 5;  // after "***@"
    } else {
      tail = at + 1;
    }
  }
  // Host and path, then each query parameter (?password=...&sslpassword=...). libpq
  // percent-decodes them, so a secret can hide in many spellings, or in a malformed part
  // that swallowed a later parameter: a part that mentions a secret is not shown.
  const auto q = out.find('?', tail);
  std::string result = out.substr(0, tail);
  const std::string hostpath = out.substr(tail, q == std::string::npos ? q : q - tail);
  result += looks_secret(percent_decoded(hostpath)) ? "***" : hostpath;
  if (q != std::string::npos) {
    result += '?';
    std::size_t start = q + 1;
    while (start <= out.size()) {
      const auto amp = std::min(out.find('&', start), out.size());
      const std::string param = out.substr(start, amp - start);
      const auto eq = param.find('=');
      if (eq == std::string::npos) {
        result += looks_secret(percent_decoded(param)) ? "***" : param;
      } else {
        const std::string key = percent_decoded(param.substr(0, eq));
        const bool hide = is_secret_key(key) || looks_secret(percent_decoded(param.substr(eq + 1)));
        result += hide ? param.substr(0, eq + 1) + "***" : param;
      }
      if (amp < out.size()) result += '&';
      start = amp + 1;
    }
  }
  out = result;
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
      if (i >= s.size()) {
        // Unterminated quote: libpq refuses the string, and the rest may hide a password.
        out.append(looks_secret(s.substr(vstart)) ? "***" : std::string(s.substr(vstart)));
        break;
      }
      ++i;
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) {
        i += (s[i] == '\\' && i + 1 < s.size()) ? 2 : 1;
      }
    }
    // A value that mentions a secret (an escaped space can make "password=..." part of
    // another key's value) is hidden too.
    if (is_secret_key(key) || looks_secret(s.substr(vstart, std::min(i, s.size()) - vstart))) {
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

std::string libpq_error_text(std::string_view message, std::string_view conninfo) {
  std::string out(message);
  // libpq quotes a malformed URI whole in its message: show it redacted.
  if (!conninfo.empty()) {
    const std::string safe = redact_conninfo(conninfo);
    for (auto pos = out.find(conninfo); pos != std::string::npos;
         pos = out.find(conninfo, pos + safe.size())) {
      out.replace(pos, conninfo.size(), safe);
    }
  }
  // And any password libpq could parse out of the string, wherever it appears.
  const std::string copy(conninfo);
  char* err = nullptr;
  const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> opts(
      PQconninfoParse(copy.c_str(), &err), &PQconninfoFree);
  if (err) PQfreemem(err);
  for (const PQconninfoOption* o = opts.get(); o && o->keyword; ++o) {
    if (!o->val || !*o->val || !is_secret_key(o->keyword)) continue;
    const std::string secret(o->val);
    for (auto pos = out.find(secret); pos != std::string::npos; pos = out.find(secret, pos + 3)) {
      out.replace(pos, secret.size(), "***");
    }
  }
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '.')) out.pop_back();
  return out;
}

void check_conninfo(std::string_view conninfo, std::string_view setting) {
  const std::string copy(conninfo);
  char* err = nullptr;
  const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> opts(
      PQconninfoParse(copy.c_str(), &err), &PQconninfoFree);
  if (opts) return;
  const std::string why = err ? libpq_error_text(err, conninfo) : "out of memory";
  if (err) PQfreemem(err);
  throw config_error(
      fmt::format("{} is not a valid connection string ({}): {}. Hint: use a libpq URI "
                  "(postgresql://user@host:5432/dbname?sslmode=verify-full) or keyword=value pairs "
                  "(host=... port=... dbname=... user=...)",
                  setting, redact_conninfo(conninfo), why));
}

}  // namespace txbox
