#include "model/model_context.h"

namespace baichuan {

size_t ModelContext::bytes() const {
  size_t floats = 0;
  for (const auto* buffer : {&x, &xn, &q, &k, &v, &att, &gate, &up, &head_in, &logits, &rope}) floats += buffer->capacity();
  return floats * sizeof(float) + rows.capacity() * sizeof(RowPosition) + query_tiles.capacity() * sizeof(int64_t);
}

}  // namespace baichuan
