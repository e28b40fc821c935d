#include <gtest/gtest.h>

#include "core/error.h"
#include "error_matchers.h"
#include "eval/csv.h"

using baichuan::Error;
using baichuan::eval::parse_csv;
using baichuan::testing::throws_error;

TEST(EvalCsv, QuotedFieldsWithCommasNewlinesAndQuotes) {
  auto rows = parse_csv("a,\"b, c\",\"say \"\"hi\"\"\"\r\n\"multi\nline\",x,\r\nlast,1,2", "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields, (std::vector<std::string>{"a", "b, c", "say \"hi\""}));
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"multi\nline", "x", ""}));
  EXPECT_EQ(rows[1].line, 2u);
  EXPECT_EQ(rows[2].line, 4u);  // the quoted newline counts as a line
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"last", "1", "2"}));
}

TEST(EvalCsv, BomBlankLinesAndEmptyFields) {
  auto rows = parse_csv("\xEF\xBB\xBFid,q\n\n1,\n,\n", "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].fields[0], "id");
  EXPECT_EQ(rows[1].fields, (std::vector<std::string>{"1", ""}));
  EXPECT_EQ(rows[2].fields, (std::vector<std::string>{"", ""}));
  EXPECT_EQ(rows[2].line, 4u);
}

TEST(EvalCsv, CrlfInsideQuotedFieldIsKept) {
  auto rows = parse_csv("\"a\r\nb\",c\r\n", "t.csv");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].fields[0], "a\r\nb");
}

TEST(EvalCsv, ErrorsNameFileAndLine) {
  EXPECT_THAT([] { parse_csv("a,b\nc,\"unterminated\n", "bad.csv"); }, throws_error("bad.csv:2"));
  EXPECT_THAT([] { parse_csv("a,b\n\"x\"y,z\n", "bad.csv"); }, throws_error("bad.csv:2"));
}
