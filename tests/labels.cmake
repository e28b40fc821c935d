# CTest labels of the GoogleTest cases, read by CTest after gtest_discover_tests has listed them
# (baichuan_tests_TESTS). Every case gets one or more of:
#   unit    fast, in-process, no reference data needed beyond small inputs
#   golden  compared with the official code's outputs in ../shared/reference (suites named *Golden*)
#   cli     runs the `baichuan` program (build/bin/baichuan); the sanitizer tree does not build it, so
#           these run in the Release tree only (the library code they reach runs under ASan in unit tests)
#   server  the HTTP server and its scheduler, in process
#   slow    3 s or more each in Release (from CTestCostData.txt on the 2-core CI machine)
# The Node.js tests carry `node`, the pytest run `python`, the fuzz smoke runs `fuzz` (CMakeLists.txt).
# A new test that runs the CLI: add its suite to BAICHUAN_CLI_SUITES or its name to BAICHUAN_CLI_CASES
# (under CTest, one that is missing fails, saying so: cli_runner.h).
set(BAICHUAN_CLI_SUITES BenchCli Cli CliArguments CliChat DataParallelMpirun EvalCli FinetuneCli
    MergeLoraCli MergeLoraHf OutputSafety PreprocessCli PreprocessGolden QuantizeCli)
set(BAICHUAN_CLI_CASES
    BnbNf4.LoadLineNamesThePath
    BnbNf4.NativeNf4ModelComputesTheExactWeightsLogits
    BnbNf4.QuantizeAndConvertTakeTheFolder
    Bf16Products.UnknownPrecisionNameIsRefused
    KernelBackend.EnvironmentForcesAPathTheCpuCanRun
    MindRecordFile.PreprocessOfTheGoldenSampleReadsBackBySpec
    PerplexityModel.CliJsonAndKlBase
    PerplexityModel.CliRefusesBadInput
    TrainGolden.FinetuneOneStepCliMatchesTheOfficialCode
    TrainOutputs.FinetuneWritesTheLossCurveAndShardedModel)
set(BAICHUAN_SERVER_SUITES HttpServer HttpServerTest OpenAiApi SchedulerTest)
set(BAICHUAN_SLOW_CASES
    TokenizerData.EveryDataLineMatchesSentencePieceRebuiltModelAndRoundTrips  # every corpus line in CI
    QuantizeCli.MixesOnAThirtyTwoLayerModel
    QuantizeCli.InitRandomBlocksHaveTheRequestedSpread
    QuantizeCli.EveryTypeFromAHuggingFaceFolderLoadsAndGenerates
    QuantizeCli.RequantizesAQuantizedFile
    FinetuneCli.TinyModelOverfitsEightBelleRecords
    FinetuneCli.ResumeIsBitIdenticalAcrossThreadCounts
    FinetuneCli.KillInsideACheckpointWriteLeavesThePreviousOneResumable
    TrainGolden.FinetuneOneStepCliMatchesTheOfficialCode
    GgufCheckpoint.CraftedMetadataIsRefusedNamingTheKey
    GgufCheckpoint.DefaultConvertStoresANormalisedHeadAndSaysSo
    GgufCheckpoint.FileWithoutOurExtraKeysRebuildsTheTokenizerAndMatchesGolden
    PreprocessCli.BadInputGivesOneClearErrorAndNoOutput
    QuantizedModelThreads.OneAndTwoThreadsGiveIdenticalLogits
    PerplexityModel.CliJsonAndKlBase
    BnbNf4.LoadLineNamesThePath
    TrainOutputs.FinetuneWritesTheLossCurveAndShardedModel
    Tasks/EvalCli.RunsEndToEndOnTheDataSamples/"bbh")

cmake_policy(PUSH)
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST): CTest reads this file without the project's policies
foreach(test IN LISTS baichuan_tests_TESTS)
  # "Instance/Suite.Case/param" -> "Suite", "Suite.Case" (parameterised names carry a prefix and a suffix)
  string(REGEX REPLACE "^([^./]*/)?([^.]*)\\..*$" "\\2" suite "${test}")
  string(REGEX REPLACE "^([^./]*/)?([^./]*\\.[^/]*).*$" "\\2" suite_case "${test}")
  set(labels "")
  if(suite IN_LIST BAICHUAN_CLI_SUITES OR suite_case IN_LIST BAICHUAN_CLI_CASES)
    list(APPEND labels cli)
  endif()
  if(suite IN_LIST BAICHUAN_SERVER_SUITES)
    list(APPEND labels server)
  endif()
  if(suite MATCHES "Golden")
    list(APPEND labels golden)
  endif()
  if(NOT labels)
    set(labels unit)
  endif()
  if(test IN_LIST BAICHUAN_SLOW_CASES)
    list(APPEND labels slow)
  endif()
  # The labels reach the test too, comma-separated: testing::cli_program() fails a case that runs the
  # CLI without `cli`, so a new CLI test cannot be left out of the lists above.
  string(REPLACE ";" "," labels_text "${labels}")
  set_tests_properties("${test}" PROPERTIES LABELS "${labels}" ENVIRONMENT "BAICHUAN_TEST_LABELS=${labels_text}")
  if(BAICHUAN_SANITIZED_TESTS AND "cli" IN_LIST labels)
    set_tests_properties("${test}" PROPERTIES DISABLED TRUE)  # no CLI in the sanitizer tree
  endif()
endforeach()
cmake_policy(POP)
