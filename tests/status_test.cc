// The list of status codes (gismo/status_codes.h) and what is generated from
// it: the C enum and messages, the C++ kStatusCodes and Status; and the names
// of object states.
#include <gtest/gtest.h>

#include <gismo/gismo.hpp>
#include <gismo/status.hpp>
#include <set>
#include <string>
#include <string_view>

#include "common/last_error.h"

namespace gismo {
namespace {

// The values are ABI: restated here so that a renumbering fails a test.
static_assert(GISMO_OK == 0);
static_assert(GISMO_ERR_INVALID_ARGUMENT == 1);
static_assert(GISMO_ERR_OBJECT_EXISTS == 2);
static_assert(GISMO_ERR_OBJECT_NOT_FOUND == 3);
static_assert(GISMO_ERR_OBJECT_NOT_SEALED == 4);
static_assert(GISMO_ERR_OBJECT_ALREADY_SEALED == 5);
static_assert(GISMO_ERR_OBJECT_IN_USE == 6);
static_assert(GISMO_ERR_OUT_OF_MEMORY == 7);
static_assert(GISMO_ERR_TIMEOUT == 8);
static_assert(GISMO_ERR_CONNECTION == 9);
static_assert(GISMO_ERR_PROTOCOL == 10);
static_assert(GISMO_ERR_IO == 11);
static_assert(GISMO_ERR_LIMIT == 12);
static_assert(GISMO_ERR_NOT_CREATOR == 13);
static_assert(GISMO_ERR_NOT_HELD == 14);
static_assert(GISMO_ERR_BAD_REGION == 15);
static_assert(GISMO_ERR_INTERNAL == 16);
static_assert(GISMO_ERR_UNSUPPORTED == 17);
static_assert(GISMO_ERR_BUSY == 18);
static_assert(GISMO_ERR_PERMISSION == 19);
static_assert(GISMO_ERR_CONFLICT == 20);
static_assert(GISMO_STATE_UNSEALED == 1 && GISMO_STATE_SEALED == 2 && GISMO_STATE_DELETING == 3);
static_assert(GISMO_STATE_CREATED == GISMO_STATE_UNSEALED);

// One row of the list, all its fields.
struct ListedCode {
  gismo_status_t code;
  std::string_view enumerator;
  std::string_view short_name;
  int value;
  std::string_view message;
  std::string_view py_class;
  std::string_view py_base;
};

constexpr ListedCode kListed[] = {
#define LISTED_CODE(name, short_name, value, message, py_class, py_base) \
  {name, #name, #short_name, value, message, py_class, py_base},
    GISMO_STATUS_CODES(LISTED_CODE)
#undef LISTED_CODE
};

TEST(StatusCodesTest, EveryCodeHasADistinctValueNameAndMessage) {
  ASSERT_EQ(std::size(kListed), std::size(kStatusCodes));
  std::set<int> values;
  std::set<std::string_view> names, classes;
  int previous = -1;
  for (const ListedCode& c : kListed) {
    SCOPED_TRACE(c.enumerator);
    EXPECT_EQ(static_cast<int>(c.code), c.value);
    EXPECT_TRUE(values.insert(c.value).second) << "value used twice";
    EXPECT_GT(c.value, previous) << "the list is in value order";
    previous = c.value;
    EXPECT_TRUE(names.insert(c.short_name).second) << "name used twice";
    EXPECT_FALSE(c.message.empty());
    EXPECT_EQ(std::string_view(gismo_status_message(c.code)), c.message);
    // The prefix is GISMO_ for OK and GISMO_ERR_ for every error.
    const std::string_view prefix = c.code == GISMO_OK ? "GISMO_" : "GISMO_ERR_";
    EXPECT_EQ(std::string(prefix) + std::string(c.short_name), c.enumerator);
    // Every error has its own Python class; OK has none.
    EXPECT_EQ(c.py_class.empty(), c.code == GISMO_OK);
    if (!c.py_class.empty()) {
      EXPECT_TRUE(classes.insert(c.py_class).second) << c.py_class;
    }
  }
  EXPECT_EQ(kListed[0].code, GISMO_OK);
  EXPECT_STREQ(gismo_status_message(static_cast<gismo_status_t>(previous + 1)), "unknown status");
}

TEST(StatusCodesTest, CppListAgreesWithTheC) {
  for (size_t i = 0; i < std::size(kStatusCodes); ++i) {
    const StatusCodeInfo& info = kStatusCodes[i];
    SCOPED_TRACE(kListed[i].enumerator);
    EXPECT_EQ(info.code, kListed[i].code);
    EXPECT_EQ(info.name, kListed[i].short_name);
    EXPECT_EQ(info.message, std::string_view(gismo_status_message(info.code)));
    EXPECT_EQ(StatusCodeName(info.code), info.name);
  }
  EXPECT_EQ(StatusCodeName(GISMO_ERR_BUSY), "BUSY");
  EXPECT_EQ(StatusCodeName(static_cast<gismo_status_t>(1000)), "");
}

TEST(StatusCodesTest, EveryCodeRoundTripsBetweenCAndCpp) {
  for (const StatusCodeInfo& info : kStatusCodes) {
    SCOPED_TRACE(info.name);
    // C++ -> C: a Status keeps its code, and without a detail says the
    // code's message.
    Status bare(info.code);
    EXPECT_EQ(bare.code(), info.code);
    EXPECT_EQ(bare.ok(), info.code == GISMO_OK);
    EXPECT_EQ(bare.message(), info.message);
    EXPECT_EQ(bare.ToString(), info.code == GISMO_OK ? "OK" : std::string(info.message));
    Result<int> result(info.code, "detail");
    // (GISMO_OK with no value is no Result: see ResultTest.)
    EXPECT_EQ(result.status().code(), info.code == GISMO_OK ? GISMO_ERR_INTERNAL : info.code);
    if (info.code == GISMO_OK) continue;
    // C -> C++: a failed C call's code and gismo_last_error() detail become
    // the Status the C++ API returns.
    SetLastError("detail of " + std::string(info.name));
    Status from_c = detail::FromC(info.code);
    EXPECT_EQ(from_c.code(), info.code);
    EXPECT_EQ(from_c.message(), "detail of " + std::string(info.name));
    EXPECT_EQ(from_c.ToString(),
              std::string(info.message) + ": detail of " + std::string(info.name));
  }
  EXPECT_TRUE(detail::FromC(GISMO_OK).ok());
}

TEST(StatusCodesTest, BusyIsNewAndInUseKeepsItsValue) {
  EXPECT_STREQ(gismo_status_message(GISMO_ERR_BUSY),
               "a lock is held by a client that is suspected dead but not yet fenced; try again "
               "later");
  EXPECT_STREQ(gismo_status_message(GISMO_ERR_OBJECT_IN_USE), "object is in use");
}

TEST(StateNameTest, EveryStateHasItsName) {
  EXPECT_STREQ(gismo_state_name(GISMO_STATE_UNSEALED), "unsealed");
  EXPECT_STREQ(gismo_state_name(GISMO_STATE_CREATED), "unsealed");
  EXPECT_STREQ(gismo_state_name(GISMO_STATE_SEALED), "sealed");
  EXPECT_STREQ(gismo_state_name(GISMO_STATE_DELETING), "deleting");
  EXPECT_STREQ(gismo_state_name(static_cast<gismo_object_state_t>(0)), "unknown");
  EXPECT_STREQ(gismo_state_name(static_cast<gismo_object_state_t>(4)), "unknown");
}

// A Result is a value or a failure, never neither; using a failure's value
// ends the process with its message (it threw std::bad_variant_access,
// across an API that promises no exceptions).
TEST(ResultTest, AnOkStatusIsNoValueAndAFailuresValueIsNeverUsed) {
  Result<int> from_ok(Status{});
  EXPECT_FALSE(from_ok.ok());
  EXPECT_EQ(from_ok.status().code(), GISMO_ERR_INTERNAL);
  Result<int> value(7);
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 7);
  EXPECT_TRUE(value.status().ok());
  EXPECT_DEATH(
      {
        Result<std::string> failed(GISMO_ERR_TIMEOUT, "nothing came");
        (void)failed->size();
      },
      "the value of a failed Result was used: .*nothing came");
}

}  // namespace
}  // namespace gismo
