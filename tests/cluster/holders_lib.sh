# Shared by freeze_test.sh and suspect_test.sh: node 1 puts 'shared', node 2
# holds it and keeps an unsealed object; recovered() once node 2's client is.
setup_holders() {
  agent_start a1 1
  agent_start a2 2
  ok a1 "put shared $((1 << 20))"
  ok a1 usage
  used1=$(kv used)
  ok a2 "get shared 10000"
  ok a2 "create unsealed2 $((4 << 20))"
  ok a1 "stat shared"
  expect_kv refs 1
}
recovered() {
  reply_has a1 "stat shared" "refs=0" && reply_has a1 usage "used=$used1" &&
    [[ " $R " == *" unsealed=0 "* ]]
}

