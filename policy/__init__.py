"""Policy rules shared by the portal and the gateway: compiled role rules, SQL rules, masking
policy and column classification. Imports no Django and no app, so either side can use it."""
