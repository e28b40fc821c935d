// Checking the baichuan::Error a call throws, one way for every test:
//   EXPECT_THAT([&] { parse_csv(text, "bad.csv"); }, throws_error("bad.csv:2"));
//   EXPECT_THAT([&] { ... }, throws_error("Q4_K", "256"));         // every fragment in the message
//   EXPECT_THAT([&] { ... }, throws_error_that(StartsWith(path)));  // any gmock string matcher
// The call fails the expectation when it returns, or throws anything but a baichuan::Error.
#pragma once
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "core/error.h"

namespace baichuan::testing {

template <typename MessageMatcher>
auto throws_error_that(MessageMatcher&& matcher) {
  return ::testing::ThrowsMessage<Error>(std::forward<MessageMatcher>(matcher));
}

template <typename... Fragments>
auto throws_error(const Fragments&... fragments) {
  static_assert(sizeof...(Fragments) > 0, "name at least one fragment of the message");
  return throws_error_that(::testing::AllOf(::testing::HasSubstr(std::string(fragments))...));
}

// The message of the Error `f` throws, or `if_none` when it returns, for helpers that build an input
// and hand the message to several checks. Other exceptions pass through and fail the test.
template <typename F>
std::string error_message_of(F&& f, const std::string& if_none = "(no error)") {
  try {
    std::forward<F>(f)();
  } catch (const Error& e) {
    return e.what();
  }
  return if_none;
}

}  // namespace baichuan::testing
