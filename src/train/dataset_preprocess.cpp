#include "train/dataset_preprocess.h"

#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>

#include "core/error.h"
#include "core/thread_pool.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset_file.h"
#include "train/dataset_json.h"
#include "train/dataset_sample.h"
#include "train/mindrecord_format.h"

namespace baichuan::train {

namespace {

// The one writer of the chosen format.
struct OutputWriter {
  std::optional<TokenFileWriter> tokens;
  std::optional<JsonDatasetWriter> json;
  std::optional<MindRecordWriter> mindrecord;
  std::string path;

  OutputWriter(const PreprocessOptions& o, int64_t row_length) : path(o.output) {
    switch (o.format) {
      case DatasetFormat::Tokens: tokens.emplace(o.output, row_length); break;
      case DatasetFormat::Json: json.emplace(o.output); break;
      case DatasetFormat::MindRecord: mindrecord.emplace(o.output, row_length, o.mindrecord); break;
    }
  }
  void add(const std::string& id, const LabelledRow& row) {
    if (tokens) tokens->add(row.input_ids, row.labels, row.truncated());
    if (json) json->add(id, row.input_ids, row.labels);
    if (mindrecord) mindrecord->add(row.input_ids, row.labels);
  }
  std::vector<std::string> commit() {
    if (mindrecord) return mindrecord->commit();
    if (tokens) tokens->commit();
    if (json) json->commit();
    return {path};
  }
};

}  // namespace

void label_text(const Tokenizer& tokenizer, const std::string& text, int64_t row_length, LabelledRow& row) {
  row.input_ids = tokenizer.encode(text);
  row.input_ids.push_back(tokenizer.eos_id());
  row.labels = row.input_ids;
  row.full_length = static_cast<int64_t>(row.input_ids.size());
  if (row_length == 0) return;
  row.input_ids.resize(static_cast<size_t>(row_length), kPadId);
  row.labels.resize(static_cast<size_t>(row_length), kIgnoreIndex);
}

PreprocessSummary preprocess_dataset(const Tokenizer& tokenizer, const PreprocessOptions& o, ThreadPool* pool,
                                     const std::function<void(const PreprocessProgress&)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  if (o.seq_length <= 0) fail("--seq-length must be at least 1 (got ", o.seq_length, ")");
  if (o.seq_length > (1 << 20)) fail("--seq-length ", o.seq_length, " is more than 1048576");
  if (o.output.empty()) fail("no output file (-o)");
  if (o.format != DatasetFormat::MindRecord && o.mindrecord.shards != 1) fail("--shards is for --format mindrecord");
  auto pack_needs_text = [](InputLayout layout) {
    fail("--pack is for plain-text records (--layout text, {\"text\": ...}), not ", layout_name(layout), " conversations");
  };
  if (o.pack && o.layout != InputLayout::Auto && o.layout != InputLayout::Text) pack_needs_text(o.layout);
  // The output replaces its file only at the end, but it would still replace the input.
  std::vector<std::string> outputs = {o.output};
  if (o.format == DatasetFormat::MindRecord) {
    outputs = mindrecord::shard_paths(o.output, o.mindrecord.shards);
    for (size_t i = 0, n = outputs.size(); i < n; ++i) outputs.push_back(outputs[i] + ".db");
  }
  for (const auto& out : outputs) {
    std::error_code ec;
    if (std::filesystem::equivalent(o.input, out, ec)) fail(out, ": is the input file; choose another output name");
  }
  PreprocessSummary s;
  // MindFormers' belle_preprocess.py builds its rows at seq_length + 1.
  s.row_length = o.seq_length + (o.format == DatasetFormat::MindRecord ? 1 : 0);

  ConversationReader reader(o.input, o.layout);
  OutputWriter writer(o, s.row_length);

  // Records are labelled in batches, tokenized in parallel, written in file order.
  constexpr size_t kBatch = 256;
  std::vector<Conversation> batch;
  std::vector<LabelledRow> rows(kBatch);
  PreprocessProgress p{0, reader.file_size(), 0};
  bool reading_done = false;
  std::vector<std::exception_ptr> errors(kBatch);
  LabelledRow packed;  // with pack: the row being filled
  auto write_row = [&](const std::string& id, const LabelledRow& row) {
    writer.add(id, row);
    ++s.rows;
    s.tokens += row.tokens();
    s.label_tokens += row.label_tokens();
  };
  // Appends a whole text record to the packed rows, writing each row as it fills.
  auto pack_record = [&](const LabelledRow& record) {
    for (size_t at = 0; at < record.input_ids.size();) {
      const size_t n = std::min(record.input_ids.size() - at, static_cast<size_t>(s.row_length) - packed.input_ids.size());
      packed.input_ids.insert(packed.input_ids.end(), record.input_ids.begin() + at, record.input_ids.begin() + at + n);
      packed.labels.insert(packed.labels.end(), record.labels.begin() + at, record.labels.begin() + at + n);
      at += n;
      if (packed.input_ids.size() == static_cast<size_t>(s.row_length)) {
        packed.full_length = s.row_length;
        write_row(std::to_string(s.rows), packed);
        packed.input_ids.clear();
        packed.labels.clear();
      }
    }
  };
  auto flush = [&] {
    const bool text = reader.layout() == InputLayout::Text;
    if (o.pack && !text && !batch.empty()) pack_needs_text(reader.layout());
    // The pool's threads must not throw: an error is carried back and rethrown here.
    auto label = [&](int64_t begin, int64_t end, int) {
      for (auto i = static_cast<size_t>(begin); i < static_cast<size_t>(end); ++i) try {
          if (text)
            label_text(tokenizer, batch[i].turns.at(0).value, o.pack ? 0 : s.row_length, rows[i]);
          else
            label_conversation(tokenizer, batch[i], s.row_length, rows[i]);
        } catch (...) {
          errors[i] = std::current_exception();
        }
    };
    const auto n = static_cast<int64_t>(batch.size());
    if (pool && n > 1)
      pool->parallel_for(n, label);
    else
      label(0, n, 0);
    for (auto& e : errors)
      if (e) std::rethrow_exception(std::exchange(e, nullptr));
    for (size_t i = 0; i < batch.size(); ++i) {
      const LabelledRow& row = rows[i];
      ++s.records;
      if (o.pack) {
        pack_record(row);
        continue;
      }
      write_row(batch[i].id, row);
      s.truncated += row.truncated() ? 1 : 0;
      s.dropped_tokens += std::max<int64_t>(0, row.full_length - s.row_length);
    }
    batch.clear();
    if (progress) {
      p.bytes_read = reading_done ? p.bytes_total : reader.bytes_read();
      p.records = s.records;
      progress(p);
    }
  };
  auto on_bad = [&](const BadRecord& bad) {
    ++s.bad_records;
    if (s.bad.size() < kListedBadRecords) s.bad.push_back(bad);
  };
  reader.read(
      [&](Conversation&& c) {
        batch.push_back(std::move(c));
        if (batch.size() == kBatch) flush();
      },
      o.skip_bad ? std::function<void(const BadRecord&)>(on_bad) : nullptr);
  reading_done = true;
  flush();
  if (!packed.input_ids.empty()) {  // the last packed row, padded
    packed.full_length = static_cast<int64_t>(packed.input_ids.size());
    packed.input_ids.resize(static_cast<size_t>(s.row_length), kPadId);
    packed.labels.resize(static_cast<size_t>(s.row_length), kIgnoreIndex);
    write_row(std::to_string(s.rows), packed);
  }
  s.layout = reader.layout();
  s.json_lines = reader.json_lines();
  if (s.records == 0)
    fail(o.input, ": no records to write", s.bad_records ? cat(" (all ", s.bad_records, " are bad; first: ", s.bad[0].message, ")") : "");
  s.files = writer.commit();
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

}  // namespace baichuan::train
