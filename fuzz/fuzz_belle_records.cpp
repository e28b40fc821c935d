// libFuzzer target for the fine-tuning input reader (BELLE chat and Alpaca layouts, as a JSON array
// or JSON Lines): the input is written to a file and read record by record, bad records going to the
// callback. The first byte picks the layout (auto, belle, alpaca). Properties: bad records are
// numbered from 1 in increasing order; every conversation has at least one turn; the reader never
// reports more bytes read than the file holds.
#include <cstdint>
#include <string>

#include "core/error.h"
#include "fuzz_support.h"
#include "train/belle_records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baichuan;
  using fuzz_support::property_failed;
  if (size == 0) return 0;
  const train::InputLayout layouts[] = {train::InputLayout::Auto, train::InputLayout::Belle, train::InputLayout::Alpaca};
  const auto layout = layouts[data[0] % 3];
  const std::string path = fuzz_support::temp_dir().write("data.json", fuzz_support::as_text(data + 1, size - 1));
  try {
    train::ConversationReader reader(path, layout);
    int64_t last_bad = 0;
    reader.read(
        [&](train::Conversation&& c) {
          if (c.turns.empty()) property_failed("a conversation without turns, id '", c.id, "'");
        },
        [&](const train::BadRecord& bad) {
          if (bad.record <= last_bad) property_failed("bad record ", bad.record, " reported after ", last_bad);
          last_bad = bad.record;
        });
    if (reader.file_size() != size - 1) property_failed("file size ", reader.file_size(), ", written ", size - 1);
    if (reader.bytes_read() > reader.file_size())
      property_failed("read ", reader.bytes_read(), " bytes of a ", reader.file_size(), "-byte file");
  } catch (const Error&) {
  }
  return 0;
}
