// baichuan bench: prompt-processing and generation speed, measured the way llama.cpp's llama-bench
// measures it, so the two tables can be read side by side.
//   ppN: N random token ids fed in one forward step into an empty KV cache (logits of the last one).
//   tgN: N forward steps of one random token each, starting from an empty KV cache.
//   tgN xS (--streams S): N steps that each feed one token to each of S sequences, as the server's
//     continuous batching does; t/s counts the tokens of all S.
//   "ppN @ dD", "tgN @ dD" (-d D): the same after D random tokens already in the cache, as newer
//     llama-bench versions do: the D tokens are processed once (in steps of 512, not timed) and each
//     repetition truncates the cache back to them, so attention over a long context is what changes.
// Each test runs once to warm up (the whole prompt for pp, one token for tg, as llama-bench does),
// then -r timed repetitions; t/s is the mean ± sample standard deviation over the repetitions.
#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <sstream>

#include "commands.h"
#include "common.h"
#include "convert/quant_mix.h"
#include "core/error.h"
#include "kernels/cpu.h"

namespace baichuan::cli {

namespace {

struct TestResult {
  int64_t n_prompt = 0, n_gen = 0, n_depth = 0;
  int threads = 0, streams = 1;
  std::string test_time;        // RFC 3339, when the test started
  std::vector<uint64_t> samples_ns;
  uint64_t peak_rss_bytes = 0;  // of the process, after the test

  std::string name() const {
    const std::string depth = n_depth > 0 ? " @ d" + std::to_string(n_depth) : "";
    if (n_prompt > 0) return "pp" + std::to_string(n_prompt) + depth;
    return "tg" + std::to_string(n_gen) + (streams > 1 ? " x" + std::to_string(streams) : "") + depth;
  }
  std::vector<double> samples_ts() const {
    std::vector<double> ts;
    const double tokens = static_cast<double>(n_prompt + n_gen * streams);
    for (uint64_t ns : samples_ns) ts.push_back(1e9 * tokens / static_cast<double>(ns));
    return ts;
  }
};

template <typename T>
double mean(const std::vector<T>& v) {
  double s = 0;
  for (T x : v) s += static_cast<double>(x);
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1), 0 for fewer than two values, as llama-bench reports.
template <typename T>
double stddev(const std::vector<T>& v) {
  if (v.size() < 2) return 0;
  double m = mean(v), s = 0;
  for (T x : v) s += (static_cast<double>(x) - m) * (static_cast<double>(x) - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

uint64_t peak_rss_bytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%FT%TZ", &tm);
  return buf;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "";
}

// What the weights are, as llama.cpp's model description says it: "baichuan 7B F16",
// "baichuan 7B Q4_K - Medium". The size is told from the layer count as llama.cpp does (32 -> 7B,
// 40 -> 13B, else ?B). The type is llama.cpp's name of the file type (llama_model_ftype_name) whose
// per-tensor choice (model/quant_mix.h) gives every tensor its stored type; when none does (e.g. a
// file another tool wrote), the type holding most matrix elements.
struct ModelSummary {
  std::string type;
  uint64_t bytes = 0, params = 0;
};

std::string bench_llama_ftype_label(uint32_t llama_ftype) {
  switch (llama_ftype) {
    case 0: return "all F32";
    case 1: return "F16";
    case 32: return "BF16";
    case 2: return "Q4_0";
    case 3: return "Q4_1";
    case 7: return "Q8_0";
    case 8: return "Q5_0";
    case 9: return "Q5_1";
    case 14: return "Q4_K - Small";
    case 15: return "Q4_K - Medium";
    case 16: return "Q5_K - Small";
    case 17: return "Q5_K - Medium";
    case 18: return "Q6_K";
  }
  return "";
}

// The first of our file types that stores every tensor as this checkpoint does, as llama.cpp names it.
std::string bench_file_type_label(const Checkpoint& checkpoint) {
  std::istringstream names(file_type_names());
  std::string name;
  while (std::getline(names, name, ',')) {
    const FileType type = parse_file_type(name.substr(name.find_first_not_of(' ')));
    const bool matches = std::all_of(checkpoint.tensors.begin(), checkpoint.tensors.end(), [&](const auto& entry) {
      return tensor_type_for(type, entry.first, entry.second.shape, checkpoint.config) == entry.second.dtype;
    });
    if (matches) return bench_llama_ftype_label(llama_file_type(type));
  }
  return "";
}

ModelSummary summarize(const Model& model) {
  ModelSummary s;
  std::map<DType, int64_t> matrix_elems;
  for (const auto& [name, t] : model.checkpoint().tensors) {
    s.bytes += t.nbytes;
    s.params += static_cast<uint64_t>(t.numel());
    if (t.shape.size() == 2) matrix_elems[t.dtype] += t.numel();
  }
  auto most = std::max_element(matrix_elems.begin(), matrix_elems.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  const auto& c = model.config();
  std::string size = c.num_layers == 32 ? "7B" : c.num_layers == 40 ? "13B" : "?B";
  std::string type = bench_file_type_label(model.checkpoint());
  if (type.empty()) type = most == matrix_elems.end() ? std::string("?") : std::string(dtype_name(most->first));
  s.type = "baichuan " + size + " " + type;
  return s;
}

std::string format_size(uint64_t bytes) {
  char buf[64];
  double b = static_cast<double>(bytes);
  if (bytes < (1ull << 30)) std::snprintf(buf, sizeof(buf), "%.2f MiB", b / 1024.0 / 1024.0);
  else std::snprintf(buf, sizeof(buf), "%.2f GiB", b / 1024.0 / 1024.0 / 1024.0);
  return buf;
}

std::string format_params(uint64_t n) {
  char buf[64];
  double d = static_cast<double>(n);
  if (n < 1000ull * 1000 * 1000) std::snprintf(buf, sizeof(buf), "%.2f M", d / 1e6);
  else std::snprintf(buf, sizeof(buf), "%.2f B", d / 1e9);
  return buf;
}

std::string format_ts(const TestResult& r) {
  char buf[64];
  auto ts = r.samples_ts();
  std::snprintf(buf, sizeof(buf), "%.2f ± %.2f", mean(ts), stddev(ts));
  return buf;
}

// Display width: "±" is one column but two bytes.
size_t columns(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

struct BenchCommand {
  ModelOptions model;
  std::vector<int64_t> prompts{512}, gens{128}, depths{0};
  std::vector<int> threads, streams{1};
  int reps = 3;
  bool json = false;

  void check_arguments() const {
    for (int64_t p : prompts)
      if (p < 0) fail("-p: prompt sizes must be >= 0 (0 skips the prompt test), got ", p);
    for (int64_t n : gens)
      if (n < 0) fail("-n: generation lengths must be >= 0 (0 skips the generation test), got ", n);
    for (int t : threads) {
      if (t <= 0) fail("-t: thread counts must be >= 1, got ", t);
      ThreadPool::threads_for_request(t);  // refuses more than the hardware threads
    }
    for (int64_t d : depths)
      if (d < 0) fail("-d: depths must be >= 0 (tokens already in the cache), got ", d);
    if (reps <= 0) fail("-r: repetitions must be >= 1, got ", reps);
    for (int s : streams)
      if (s <= 0) fail("--streams: stream counts must be >= 1, got ", s);
    bool any = std::any_of(prompts.begin(), prompts.end(), [](int64_t p) { return p > 0; }) ||
               std::any_of(gens.begin(), gens.end(), [](int64_t n) { return n > 0; });
    if (!any) fail("nothing to measure: every -p and -n is 0");
  }

  int run() {
    check_arguments();
    if (!threads.empty()) model.threads = threads.front();  // for the log line of load()
    auto m = model.load();
    const int64_t vocab = m->config().vocab_size;
    std::vector<int> thread_counts = threads.empty() ? std::vector<int>{model.thread_count()} : threads;
    // Fixed ids, like llama-bench's unseeded std::rand(): every run feeds the same tokens.
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> random_id(0, static_cast<int32_t>(vocab - 1));
    std::vector<float> logits;

    std::vector<TestResult> results;
    ModelContext context;
    // Fills a cache with `depth` random tokens, in steps of 512 tokens (llama-bench's micro-batch).
    auto fill_depth = [&](KvCache& cache, int64_t depth, ThreadPool& pool) {
      std::vector<int32_t> ids(static_cast<size_t>(std::min<int64_t>(depth, 512)));
      while (cache.size() < depth) {
        ids.resize(static_cast<size_t>(std::min<int64_t>(depth - cache.size(), 512)));
        for (auto& id : ids) id = random_id(rng);
        SequenceStep step{&cache, ids, false, &logits};
        m->forward(context, std::span<SequenceStep>(&step, 1), pool);
      }
    };
    for (int n_threads : thread_counts) {
      ThreadPool pool(n_threads);
      // Each repetition starts from the caches holding exactly their first `depth` positions.
      auto time_reps = [&](TestResult& r, std::vector<KvCache>& caches, const std::function<void()>& body) {
        r.test_time = utc_now();
        for (int i = 0; i < reps; ++i) {
          for (auto& cache : caches) cache.truncate(r.n_depth);
          auto start = std::chrono::steady_clock::now();
          body();
          auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
          r.samples_ns.push_back(static_cast<uint64_t>(std::max<int64_t>(ns, 1)));
        }
        r.peak_rss_bytes = peak_rss_bytes();
        std::cerr << "bench: " << r.name() << ", " << n_threads << " threads: " << format_ts(r) << " tokens/s\n";
        results.push_back(std::move(r));
      };
      for (int64_t p : prompts) {
        if (p == 0) continue;
        for (int64_t depth : depths) {
          TestResult r;
          r.n_prompt = p, r.n_depth = depth, r.threads = n_threads;
          std::vector<KvCache> caches;
          caches.push_back(m->new_cache(depth + p));
          fill_depth(caches[0], depth, pool);
          std::vector<int32_t> ids(static_cast<size_t>(p));
          for (auto& id : ids) id = random_id(rng);
          auto body = [&] {
            SequenceStep step{&caches[0], ids, false, &logits};
            m->forward(context, std::span<SequenceStep>(&step, 1), pool);
          };
          body();  // warm-up
          time_reps(r, caches, body);
        }
      }
      for (int64_t n : gens) {
        if (n == 0) continue;
        for (int64_t depth : depths)
          for (int n_streams : streams) {
            TestResult r;
            r.n_gen = n, r.n_depth = depth, r.threads = n_threads, r.streams = n_streams;
            std::vector<KvCache> caches;
            for (int s = 0; s < n_streams; ++s) {
              caches.push_back(m->new_cache(depth + n));
              fill_depth(caches.back(), depth, pool);
            }
            std::vector<int32_t> ids(static_cast<size_t>(n * n_streams));
            for (auto& id : ids) id = random_id(rng);
            std::vector<std::vector<float>> stream_logits(static_cast<size_t>(n_streams));
            // Position i of every stream in one forward step.
            auto decode_step = [&](int64_t i) {
              std::vector<SequenceStep> steps;
              for (int s = 0; s < n_streams; ++s)
                steps.push_back({&caches[static_cast<size_t>(s)],
                                 std::span<const int32_t>(ids).subspan(static_cast<size_t>(s * n + i), 1), false,
                                 &stream_logits[static_cast<size_t>(s)]});
              m->forward(context, steps, pool);
            };
            decode_step(0);  // warm-up: one token
            time_reps(r, caches, [&] {
              for (int64_t i = 0; i < n; ++i) decode_step(i);
            });
          }
      }
    }

    ModelSummary summary = summarize(*m);
    const kernels::Backend active = kernels::active_backend();
    std::string backend = active == kernels::Backend::Avx512 ? "CPU AVX512" : active == kernels::Backend::Avx2 ? "CPU AVX2" : "CPU";
    std::string cpu_features = kernels::describe_cpu();
    if (json) print_json(results, summary, backend, cpu_features, m->kv_type());
    else print_table(results, summary, backend, cpu_features);
    return 0;
  }

  void print_table(const std::vector<TestResult>& results, const ModelSummary& s, const std::string& backend,
                   const std::string& cpu_features) const {
    // Columns and widths of llama-bench's Markdown table (negative width = left-aligned).
    const std::vector<std::pair<std::string, int>> header = {{"model", -30}, {"size", 10}, {"params", 10},
                                                             {"backend", -10}, {"threads", 7}, {"test", 13},
                                                             {"t/s", 20}};
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : results)
      rows.push_back({s.type, format_size(s.bytes), format_params(s.params), backend, std::to_string(r.threads), r.name(),
                      format_ts(r)});
    std::vector<size_t> width;
    for (size_t c = 0; c < header.size(); ++c) {
      size_t w = static_cast<size_t>(std::abs(header[c].second));
      for (const auto& row : rows) w = std::max(w, columns(row[c]));
      width.push_back(w);
    }
    auto cell = [&](const std::string& text, size_t c) {
      std::string pad(width[c] - std::min(width[c], columns(text)), ' ');
      return header[c].second < 0 ? text + pad : pad + text;
    };
    std::ostringstream out;
    out << "|";
    for (size_t c = 0; c < header.size(); ++c) out << " " << cell(header[c].first, c) << " |";
    out << "\n|";
    for (size_t c = 0; c < header.size(); ++c)
      out << " " << std::string(width[c] - 1, '-') << (header[c].second > 0 ? ":" : "-") << " |";
    out << "\n";
    for (const auto& row : rows) {
      out << "|";
      for (size_t c = 0; c < header.size(); ++c) out << " " << cell(row[c], c) << " |";
      out << "\n";
    }
    out << "\npeak RSS: " << format_size(peak_rss_bytes()) << " (" << peak_rss_bytes() << " bytes)\n";
    out << "CPU: " << cpu_features << "\n";
    std::cout << out.str();
  }

  void print_json(const std::vector<TestResult>& results, const ModelSummary& s, const std::string& backend,
                  const std::string& cpu_features, DType kv_cache_type) const {
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();  // llama-bench's field order
    std::string cpu_info = cpu_model_name();
    std::string kv_type(dtype_name(kv_cache_type));
    std::transform(kv_type.begin(), kv_type.end(), kv_type.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const auto& r : results) {
      auto ts = r.samples_ts();
      rows.push_back({
          {"cpu_info", cpu_info},
          {"gpu_info", ""},
          {"backends", backend},
          {"model_filename", model.path},
          {"model_type", s.type},
          {"model_size", s.bytes},
          {"model_n_params", s.params},
          {"n_batch", r.n_prompt > 0 ? r.n_prompt : 1},
          {"n_threads", r.threads},
          {"type_k", kv_type},
          {"type_v", kv_type},
          {"n_prompt", r.n_prompt},
          {"n_gen", r.n_gen},
          {"n_depth", r.n_depth},
          {"n_streams", r.streams},
          {"test_time", r.test_time},
          {"avg_ns", static_cast<uint64_t>(mean(r.samples_ns))},
          {"stddev_ns", static_cast<uint64_t>(stddev(r.samples_ns))},
          {"avg_ts", mean(ts)},
          {"stddev_ts", stddev(ts)},
          {"samples_ns", r.samples_ns},
          {"samples_ts", ts},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"cpu_features", cpu_features},
      });
    }
    std::cout << rows.dump(2) << "\n";
  }
};

}  // namespace

Run add_bench(CLI::App& app) {
  auto cmd = std::make_shared<BenchCommand>();
  app.add_option("-m,--model", cmd->model.path, "Checkpoint: Hugging Face folder, MindSpore .ckpt, or .gguf")->required();
  app.add_option("--config", cmd->model.config, "config.json to use (e.g. for a .ckpt)");
  app.add_option("--tokenizer", cmd->model.tokenizer, "tokenizer.model to use (e.g. for a .ckpt)");
  app.add_option("--position", cmd->model.position, "Force the position scheme: rope or alibi")
      ->check(CLI::IsMember({"rope", "alibi"}));
  cmd->model.add_lora(app);  // to time the cost of unmerged adapters
  app.add_option("-p,--n-prompt", cmd->prompts, "Prompt sizes to time, comma-separated (0 = skip); default 512")
      ->delimiter(',');
  app.add_option("-n,--n-gen", cmd->gens, "Generation lengths to time, comma-separated (0 = skip); default 128")
      ->delimiter(',');
  app.add_option("-d,--n-depth", cmd->depths,
                 "Tokens already in the KV cache before each test, comma-separated (default 0)")
      ->delimiter(',');
  app.add_option("-t,--threads", cmd->threads, "Thread counts, comma-separated (default: all hardware threads)")
      ->delimiter(',');
  app.add_option("-s,--streams", cmd->streams,
                 "Sequences decoded together in the generation tests, comma-separated (default 1)")
      ->delimiter(',');
  app.add_option("-r,--repetitions", cmd->reps, "Timed repetitions of each test, after one warm-up run (default 3)");
  app.add_flag("--json", cmd->json, "Print a JSON array of results (llama-bench's field names)");
  return [cmd] { return cmd->run(); };
}

}  // namespace baichuan::cli
