// zimage pull: list a repository revision, select files, download the missing ones in parallel
// into the huggingface_hub cache layout, verifying LFS files against their sha256 ETag.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/file_io.h"
#include "hub/http.h"
#include "hub/hub.h"

namespace zimage::hub {
namespace fs = std::filesystem;

std::string read_ref(const std::string& ref_path) {
  std::error_code ec;
  if (!fs::exists(ref_path, ec)) return {};
  const std::string text = read_regular_file(ref_path, 4096, "[hub] ");
  return text.substr(0, text.find_first_of("\r\n"));
}

namespace {

using Clock = std::chrono::steady_clock;

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string human_bytes(double b) {
  const char* u[] = {"B", "KB", "MB", "GB", "TB"};
  int i = 0;
  while (b >= 1000 && i < 4) b /= 1000, ++i;
  char buf[32];
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
  return buf;
}

// --- sha256 over OpenSSL's EVP -------------------------------------------------------------
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { reset(); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void reset() { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string hex() {
    unsigned char d[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, d, &n);
    static const char* h = "0123456789abcdef";
    std::string s;
    for (unsigned i = 0; i < n; ++i) s += h[d[i] >> 4], s += h[d[i] & 15];
    return s;
  }

 private:
  EVP_MD_CTX* ctx_;
};

// --- progress: one total bar on a TTY, one line per finished file otherwise -----------------
class Progress {
 public:
  Progress(PullOptions::Progress mode, size_t files, uint64_t total) : files_(files), total_(total) {
    if (mode == PullOptions::Progress::Auto)
      mode = isatty(2) ? PullOptions::Progress::Bar : PullOptions::Progress::Lines;
    mode_ = mode;
    start_ = last_ = Clock::now();
  }
  void add(uint64_t n) {
    std::lock_guard<std::mutex> l(m_);
    done_ += n;
    auto now = Clock::now();
    if (mode_ == PullOptions::Progress::Bar && now - last_ > std::chrono::milliseconds(200)) {
      last_ = now;
      draw(now);
    }
  }
  void file_done(const std::string& path, uint64_t size, bool downloaded) {
    std::lock_guard<std::mutex> l(m_);
    ++files_done_;
    if (mode_ == PullOptions::Progress::Lines && downloaded)
      std::fprintf(stderr, "zimage: pulled %s (%s)\n", path.c_str(), human_bytes(double(size)).c_str());
    if (mode_ == PullOptions::Progress::Bar) draw(Clock::now());
  }
  void finish() {
    std::lock_guard<std::mutex> l(m_);
    if (mode_ == PullOptions::Progress::Bar) {
      draw(Clock::now());
      std::fprintf(stderr, "\n");
    }
  }

 private:
  void draw(Clock::time_point now) {
    const double s = std::chrono::duration<double>(now - start_).count();
    const double rate = s > 0.2 ? double(done_) / s : 0;
    std::string eta = "--";
    if (rate > 0 && total_ > done_) {
      long left = long(double(total_ - done_) / rate);
      char b[32];
      std::snprintf(b, sizeof b, "%ldm%02lds", left / 60, left % 60);
      eta = b;
    }
    const int width = 24;
    int filled = total_ ? int(double(done_) / double(total_) * width) : 0;
    filled = std::min(filled, width);
    std::fprintf(stderr, "\r[%s%s] %zu/%zu files  %s / %s  %s/s  ETA %s\033[K",
                 std::string(size_t(filled), '#').c_str(), std::string(size_t(width - filled), '.').c_str(),
                 files_done_, files_, human_bytes(double(done_)).c_str(), human_bytes(double(total_)).c_str(),
                 human_bytes(rate).c_str(), eta.c_str());
    std::fflush(stderr);
  }
  std::mutex m_;
  PullOptions::Progress mode_;
  size_t files_, files_done_ = 0;
  uint64_t total_, done_ = 0;
  Clock::time_point start_, last_;
};

struct Sibling {
  uint64_t size = 0;
  bool has_size = false;
};

struct Job {
  std::string repo_id, revision, commit, endpoint, token;
  HostPolicy policy;
  fs::path storage, snapshot, locks;
  bool force = false;
  Progress* progress = nullptr;
  std::atomic<uint64_t> transferred{0};
};

[[noreturn]] void http_fail(const Job& j, const Response& r, const std::string& what) {
  std::string msg = r.header("x-error-message");
  const std::string code = r.header("x-error-code");
  if (r.status == 401 || r.status == 403) {
    fail("[hub] ", j.repo_id, ": access refused (HTTP ", r.status, code.empty() ? "" : " " + code, ") for ", what,
         j.token.empty() ? ": the repository is gated or private; set HF_TOKEN (or log in with `hf auth login`) with a "
                           "token that may read it"
                         : ": the token was refused; check that it may read this gated or private repository",
         msg.empty() ? "" : " (hub: " + msg + ")");
  }
  if (r.status == 404)
    fail("[hub] ", what, ": not found (HTTP 404", code.empty() ? "" : " " + code, ") at ", j.endpoint,
         msg.empty() ? "" : " (hub: " + msg + ")");
  fail("[hub] ", what, ": HTTP ", r.status, " from ", j.endpoint, msg.empty() ? "" : " (hub: " + msg + ")");
}

std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

bool is_redirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }
bool is_relative_location(const std::string& loc) {
  return loc.find("://") == std::string::npos && loc.rfind("//", 0) != 0;
}

// An exclusive lock on .locks/models--ORG--NAME/<etag>.lock while a blob is written, so two
// processes never append to one .incomplete file.
class FileLock {
 public:
  explicit FileLock(const fs::path& p) {
    fs::create_directories(p.parent_path());
    fd_ = ::open(p.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("[hub] cannot create the lock file ", p.string());
    if (::flock(fd_, LOCK_EX) != 0) fail("[hub] cannot lock ", p.string());
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

void link_pointer(const fs::path& blob, const fs::path& pointer, bool replace) {
  std::error_code ec;
  // An existing pointer stays unless asked to replace it or it dangles (its blob was deleted).
  if (!replace && fs::exists(pointer, ec)) return;
  fs::create_directories(pointer.parent_path());
  const fs::path rel = blob.lexically_relative(pointer.parent_path());
  const fs::path tmp = pointer.string() + ".zimage-link-" + std::to_string(::getpid());
  fs::remove(tmp, ec);
  fs::create_symlink(rel, tmp, ec);
  if (ec) fail("[hub] cannot create the symlink ", pointer.string(), ": ", ec.message());
  fs::rename(tmp, pointer, ec);
  if (ec) {
    fs::remove(tmp);
    fail("[hub] cannot create ", pointer.string(), ": ", ec.message());
  }
}

void write_ref(const fs::path& storage, const std::string& revision, const std::string& commit) {
  const fs::path ref = storage / "refs" / revision;
  if (read_ref(ref.string()) == commit) return;
  fs::create_directories(ref.parent_path());
  const fs::path tmp = ref.string() + ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << commit;
    if (!f.flush()) fail("[hub] cannot write ", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, ref, ec);
  if (ec) fail("[hub] cannot write ", ref.string(), ": ", ec.message());
}

// Downloads `url` into blobs/<etag>.incomplete (resuming with Range), verifies it and renames
// it to the blob.
void download_blob(Job& j, const std::string& path, Url url, const std::string& etag, int64_t size,
                   const fs::path& blob) {
  const fs::path part = blob.string() + ".incomplete";
  std::error_code ec;
  if (j.force) fs::remove(part, ec);
  const int max_attempts = 4;
  int attempt = 0, hops = 0;
  while (true) {
    uint64_t have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
    if (size >= 0 && have > uint64_t(size)) {
      fs::remove(part, ec);
      have = 0;
    }
    Sha256 sha;
    if (have > 0) {  // the partial file's bytes count towards the hash
      std::ifstream in(part, std::ios::binary);
      std::vector<char> buf(1 << 20);
      while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        sha.update(buf.data(), size_t(in.gcount()));
      }
    }
    // A partial file that is already complete (the process stopped before the rename) is only
    // verified; anything else asks for the missing bytes.
    if (size < 0 || have != uint64_t(size) || !fs::exists(part, ec)) {
      FILE* f = std::fopen(part.c_str(), "ab");
      if (!f) fail("[hub] cannot write ", part.string());
      std::string refuse;
      uint64_t got = 0;
      Request rq;
      rq.url = url;
      rq.token = j.token;
      if (have > 0) rq.headers.push_back("Range: bytes=" + std::to_string(have) + "-");
      rq.before_body = [&](long st, const std::map<std::string, std::string>& h) {
        if (st == 206) {
          auto it = h.find("content-range");
          if (it == h.end() || it->second.rfind("bytes " + std::to_string(have) + "-", 0) != 0) {
            refuse =
                "the server answered the Range request with '" + (it == h.end() ? std::string() : it->second) + "'";
            return false;
          }
          return true;
        }
        if (have > 0) {  // 200 to a Range request: the whole file again
          if (::ftruncate(fileno(f), 0) != 0) return false;
          std::fseek(f, 0, SEEK_SET);
          sha.reset();
          have = 0;
        }
        return true;
      };
      rq.sink = [&](const char* p, size_t n) {
        if (std::fwrite(p, 1, n, f) != n) return false;
        sha.update(p, n);
        got += n;
        j.transferred += n;
        j.progress->add(n);
        return true;
      };
      TransportError te;
      Response r = perform(rq, j.policy, "download of " + path, &te);
      const bool wrote = std::fflush(f) == 0;
      std::fclose(f);
      if (!refuse.empty()) {
        fs::remove(part, ec);
        if (++attempt >= max_attempts) fail("[hub] download of ", path, ": ", refuse);
        continue;
      }
      if (te.aborted || !wrote) fail("[hub] download of ", path, ": cannot write ", part.string());
      if (r.status == 0) {  // transport error: retry (resuming) a few times, then give up keeping the part
        if (te.interrupted && ++attempt < max_attempts) {
          std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
          continue;
        }
        const uint64_t now = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
        fail("[hub] ", te.message, "; ", now, size >= 0 ? " of " + std::to_string(size) : std::string(),
             " bytes are kept in ", part.string(), " and the next pull resumes from there");
      }
      if (is_redirect(r.status)) {
        if (++hops > 5) fail("[hub] download of ", path, ": too many redirects");
        url = resolve_location(url, r.header("location"));
        j.policy.check(url, "the redirect for " + path);
        continue;
      }
      if (r.status == 416 && have > 0) {  // our partial file does not fit the server's: start over
        fs::remove(part, ec);
        if (++attempt >= max_attempts) fail("[hub] download of ", path, ": HTTP 416 for a resumed download");
        continue;
      }
      if (r.status < 200 || r.status >= 300) http_fail(j, r, "download of " + path);
    }
    const uint64_t total = fs::file_size(part, ec);
    if (size >= 0 && total < uint64_t(size)) {  // closed early without an error
      if (++attempt < max_attempts) continue;
      fail("[hub] download of ", path, ": got ", total, " of ", size, " bytes; the next pull resumes from ",
           part.string());
    }
    if (size >= 0 && total != uint64_t(size)) {
      fs::remove(part, ec);
      fail("[hub] download of ", path, ": got ", total, " bytes, the hub announced ", size,
           "; the partial file was deleted");
    }
    if (is_hex(etag, 64)) {  // LFS: the ETag is the file's sha256
      const std::string h = sha.hex();
      if (h != etag) {
        fs::remove(part, ec);
        fail("[hub] ", path, ": sha256 ", h, " does not match the hub's ETag ", etag,
             " (corrupt download); the partial file was deleted, pull again");
      }
    }
    fs::permissions(
        part, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read, ec);
    fs::rename(part, blob, ec);
    if (ec) fail("[hub] cannot move ", part.string(), " to ", blob.string(), ": ", ec.message());
    return;
  }
}

// One file: metadata from resolve/<commit>/<path> (not following the hub's redirect to its
// CDN), then the blob unless the cache has it, then the snapshot symlink.
void fetch_file(Job& j, const std::string& path) {
  const fs::path pointer = j.snapshot / path;
  std::error_code ec;
  if (!j.force && fs::exists(pointer, ec)) return;
  Url u =
      parse_url(j.endpoint + "/" + j.repo_id + "/resolve/" + url_quote(j.commit, false) + "/" + url_quote(path, true));
  Response h;
  for (int hop = 0;; ++hop) {
    Request rq;
    rq.method = "HEAD";
    rq.url = u;
    rq.token = j.token;
    h = perform(rq, j.policy, "metadata of " + path, nullptr);
    if (is_redirect(h.status) && is_relative_location(h.header("location")) && hop < 5) {
      u = resolve_location(u, h.header("location"));  // e.g. a renamed repository
      continue;
    }
    break;
  }
  if (!is_redirect(h.status) && (h.status < 200 || h.status >= 300)) http_fail(j, h, path);
  std::string etag = normalize_etag(h.header("x-linked-etag"));
  if (etag.empty()) etag = normalize_etag(h.header("etag"));
  static const std::regex etag_re("^[A-Za-z0-9_.-]{1,128}$");
  if (!std::regex_match(etag, etag_re))
    fail("[hub] ", path, ": the hub sent no usable ETag (got '", etag, "'), so the file cannot be cached");
  std::string size_s = h.header("x-linked-size");
  if (size_s.empty() && !is_redirect(h.status)) size_s = h.header("content-length");
  int64_t size = -1;
  if (!size_s.empty()) {
    try {
      size = std::stoll(size_s);
    } catch (...) {
      fail("[hub] ", path, ": invalid size '", size_s, "' from the hub");
    }
  }
  Url download = u;
  if (is_redirect(h.status)) {
    download = resolve_location(u, h.header("location"));
    j.policy.check(download, "the redirect for " + path);
  }
  const fs::path blob = j.storage / "blobs" / etag;
  fs::create_directories(blob.parent_path());
  if (j.force || !fs::exists(blob, ec)) {
    FileLock lock(j.locks / (etag + ".lock"));
    if (j.force || !fs::exists(blob, ec)) download_blob(j, path, download, etag, size, blob);
  }
  link_pointer(blob, pointer, j.force);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Reads model_index.json's component names (entries ["library", "Class"]).
std::vector<std::string> components_of(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("[hub] ", where, ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail("[hub] ", where, ": not a JSON object");
  std::vector<std::string> out;
  for (auto& [k, v] : j.items()) {
    if (k.empty() || k[0] == '_') continue;
    if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string()) {
      if (!is_safe_repo_path(k) || k.find('/') != std::string::npos)
        fail("[hub] ", where, ": refusing component name '", k, "'");
      out.push_back(k);
    }
  }
  return out;
}

void check_revision(const std::string& rev) {
  if (!is_safe_repo_path(rev) || rev.size() > 255) fail("[hub] invalid revision '", rev, "'");
}

// Offline: the cached snapshot for `revision`, or an error naming what is missing.
PullResult from_cache(const std::string& repo_id, const PullOptions& opt, const fs::path& storage,
                      const std::string& why) {
  std::string commit;
  const fs::path ref = storage / "refs" / opt.revision;
  if (is_hex(opt.revision, 40)) {
    commit = opt.revision;
  } else {
    commit = read_ref(ref.string());
    if (!is_hex(commit, 40))
      fail("[hub] ", repo_id, " (revision '", opt.revision, "') is not in the cache (no ", ref.string(), ") and ", why);
  }
  const fs::path snap = storage / "snapshots" / commit;
  std::vector<std::string> missing;
  if (!opt.files.empty()) {
    for (const auto& f : opt.files)
      if (!fs::exists(snap / f)) missing.push_back(f);
  } else {
    missing = missing_pipeline_files(snap.string());
  }
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size(); ++i) list += (i ? ", " : "") + missing[i];
    fail("[hub] ", repo_id, " (revision '", opt.revision, "') is incomplete in the cache: missing ", list, " in ",
         snap.string(), "; ", why);
  }
  PullResult r;
  r.snapshot = snap.string();
  r.commit = commit;
  r.files = opt.files;
  return r;
}

}  // namespace

std::vector<std::string> missing_pipeline_files(const std::string& snapshot) {
  const fs::path snap(snapshot);
  if (!fs::exists(snap / "model_index.json")) return {"model_index.json"};
  std::vector<std::string> comps =
      components_of(read_text(snap / "model_index.json"), (snap / "model_index.json").string());
  std::vector<std::string> missing;
  for (const auto& c : comps) {
    const fs::path d = snap / c;
    if (!fs::is_directory(d)) {
      missing.push_back(c + "/");
      continue;
    }
    if (c == "scheduler") {
      if (!fs::exists(d / "scheduler_config.json")) missing.push_back(c + "/scheduler_config.json");
    } else if (c == "tokenizer") {
      for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
        if (!fs::exists(d / f)) missing.push_back(c + "/" + f);
    } else {
      if (!fs::exists(d / "config.json")) missing.push_back(c + "/config.json");
      bool weights = false;
      for (const char* stem : {"diffusion_pytorch_model", "model"}) {
        const fs::path idx = d / (std::string(stem) + ".safetensors.index.json");
        if (fs::exists(d / (std::string(stem) + ".safetensors"))) weights = true;
        if (!weights && fs::exists(idx)) {
          weights = true;
          for (const auto& s : index_shards(c + "/" + idx.filename().string(), read_text(idx)))
            if (!fs::exists(snap / s)) missing.push_back(s);
        }
        if (weights) break;
      }
      if (!weights) missing.push_back(c + "/diffusion_pytorch_model.safetensors (or model.safetensors)");
    }
  }
  return missing;
}

namespace {
PullResult pull_impl(const std::string& repo_id, const PullOptions& opt_in) {
  PullOptions opt = opt_in;
  const fs::path storage = fs::path(cache_root(opt.cache_dir)) / repo_folder_name(repo_id);
  if (opt.revision.empty()) opt.revision = "main";
  check_revision(opt.revision);
  for (const auto& f : opt.files)
    if (!is_safe_repo_path(f))
      fail("[hub] refusing file name '", f, "' (must be a relative path inside the repository)");
  if (opt.local_files_only || offline_from_env()) {
    if (opt.force_download) fail("[hub] force_download cannot be used offline (HF_HUB_OFFLINE=1 or local_files_only)");
    return from_cache(repo_id, opt, storage,
                      std::string("downloads are off (") +
                          (opt.local_files_only ? "local_files_only" : "HF_HUB_OFFLINE=1") + "); run `zimage pull " +
                          repo_id + "` with network access");
  }
  Job j;
  j.repo_id = repo_id;
  j.revision = opt.revision;
  j.endpoint = opt.endpoint.empty() ? endpoint_from_env() : opt.endpoint;
  while (!j.endpoint.empty() && j.endpoint.back() == '/') j.endpoint.pop_back();
  j.token = opt.token.empty() ? token_from_env() : opt.token;
  j.policy = HostPolicy::from_endpoint(j.endpoint);
  j.storage = storage;
  j.locks = fs::path(cache_root(opt.cache_dir)) / ".locks" / repo_folder_name(repo_id);
  j.force = opt.force_download;

  // The revision: its commit and file list.
  Request rq;
  rq.url =
      parse_url(j.endpoint + "/api/models/" + repo_id + "/revision/" + url_quote(opt.revision, false) + "?blobs=true");
  rq.token = j.token;
  Response r = perform(rq, j.policy, "listing " + repo_id, nullptr);
  if (r.status != 200) http_fail(j, r, "revision '" + opt.revision + "' of " + repo_id);
  nlohmann::json info;
  try {
    info = nlohmann::json::parse(r.body);
  } catch (const nlohmann::json::exception& e) {
    fail("[hub] the listing of ", repo_id, " is not valid JSON (", e.what(), ")");
  }
  if (!info.is_object() || !info.contains("sha") || !info["sha"].is_string() ||
      !is_hex(info["sha"].get<std::string>(), 40))
    fail("[hub] the listing of ", repo_id, " has no commit hash ('sha')");
  j.commit = info["sha"].get<std::string>();
  j.snapshot = storage / "snapshots" / j.commit;
  if (!info.contains("siblings") || !info["siblings"].is_array())
    fail("[hub] the listing of ", repo_id, " has no 'siblings' file list");
  std::map<std::string, Sibling> siblings;
  std::vector<std::string> listing;
  for (const auto& s : info["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string())
      fail("[hub] the listing of ", repo_id, " has a file entry without 'rfilename'");
    const std::string name = s["rfilename"].get<std::string>();
    if (!is_safe_repo_path(name) ||
        !(j.snapshot / name).lexically_normal().string().starts_with(j.snapshot.string() + "/"))
      fail("[hub] refusing the listing of ", repo_id, ": unsafe file name '", name,
           "' (absolute, '..', empty parts or control characters)");
    Sibling sb;
    if (s.contains("lfs") && s["lfs"].is_object() && s["lfs"].contains("size") && s["lfs"]["size"].is_number_unsigned())
      sb.size = s["lfs"]["size"].get<uint64_t>(), sb.has_size = true;
    else if (s.contains("size") && s["size"].is_number_unsigned())
      sb.size = s["size"].get<uint64_t>(), sb.has_size = true;
    siblings[name] = sb;
    listing.push_back(name);
  }

  // The selection.
  std::vector<std::string> sel;
  auto excluded = [&](const std::string& f) {
    for (const auto& g : opt.exclude)
      if (glob_match(g, f)) return true;
    return false;
  };
  Progress quiet(PullOptions::Progress::None, 0, 0);
  j.progress = &quiet;
  if (!opt.files.empty()) {
    for (const auto& f : opt.files) {
      if (!siblings.count(f)) fail("[hub] ", repo_id, " has no file '", f, "' at revision '", opt.revision, "'");
      sel.push_back(f);
    }
  } else {
    if (!siblings.count("model_index.json"))
      fail("[hub] ", repo_id,
           " has no model_index.json: not a diffusers pipeline (pull single files with `zimage pull ", repo_id,
           " FILE...`)");
    fetch_file(j, "model_index.json");
    sel = pipeline_files(listing,
                         components_of(read_text(j.snapshot / "model_index.json"), repo_id + "/model_index.json"));
  }
  for (const auto& f : listing)
    for (const auto& g : opt.include)
      if (glob_match(g, f) && std::find(sel.begin(), sel.end(), f) == sel.end()) sel.push_back(f);
  sel.erase(std::remove_if(sel.begin(), sel.end(), excluded), sel.end());
  // Sharded weights: the index first, then the shards it names.
  std::vector<std::string> shards;
  for (const auto& f : sel) {
    if (!f.ends_with(".safetensors.index.json")) continue;
    fetch_file(j, f);
    for (const auto& s : index_shards(f, read_text(j.snapshot / f))) {
      if (!siblings.count(s)) fail("[hub] ", f, " names the shard '", s, "' which ", repo_id, " does not have");
      if (!excluded(s) && std::find(sel.begin(), sel.end(), s) == sel.end()) shards.push_back(s);
    }
  }
  sel.insert(sel.end(), shards.begin(), shards.end());
  if (sel.empty()) fail("[hub] nothing to pull from ", repo_id, ": no file matches the selection");

  // What is missing, then download it in parallel.
  std::vector<std::string> todo;
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& f : sel) {
    if (!j.force && fs::exists(j.snapshot / f, ec)) continue;
    if (j.force && (f == "model_index.json" || f.ends_with(".safetensors.index.json")) &&
        fs::exists(j.snapshot / f, ec))
      continue;  // fetched above in this run
    todo.push_back(f);
    total += siblings[f].size;
  }
  if (!todo.empty()) {  // fail before downloading anything when the files cannot fit
    fs::create_directories(storage / "blobs");
    const fs::space_info sp = fs::space(storage / "blobs", ec);
    if (!ec && sp.available < total)
      fail("[hub] not enough disk space for ", repo_id, " in ", storage.string(), ": the download needs ",
           human_bytes(double(total)), ", ", human_bytes(double(sp.available)), " are free");
  }
  Progress progress(todo.empty() ? PullOptions::Progress::None : opt.progress, todo.size(), total);
  j.progress = &progress;
  PullResult res;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr first_error;
  std::mutex err_m;
  auto worker = [&] {
    while (!stop) {
      const size_t i = next++;
      if (i >= todo.size()) return;
      try {
        fetch_file(j, todo[i]);
        progress.file_done(todo[i], siblings.at(todo[i]).size, true);
      } catch (...) {
        std::lock_guard<std::mutex> l(err_m);
        if (!first_error) first_error = std::current_exception();
        stop = true;
      }
    }
  };
  const int n = std::max(1, std::min<int>(opt.jobs, int(todo.size())));
  std::vector<std::thread> threads;
  for (int t = 1; t < n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  progress.finish();
  if (first_error) std::rethrow_exception(first_error);
  if (opt.revision != j.commit) write_ref(storage, opt.revision, j.commit);
  res.snapshot = j.snapshot.string();
  res.commit = j.commit;
  res.files = sel;
  res.downloaded_files = todo.size();
  res.downloaded_bytes = j.transferred;
  return res;
}
}  // namespace

PullResult pull(const std::string& repo_id, const PullOptions& opt) {
  try {
    return pull_impl(repo_id, opt);
  } catch (const fs::filesystem_error& e) {  // e.g. a cache folder that cannot be written
    fail("[hub] cannot write the cache for ", repo_id, ": ", e.what());
  }
}

}  // namespace zimage::hub
