export { BudgetError, Budgets, budgetKey } from "./budgets.ts";
export type { Admission, BudgetLimitName, BudgetLimits } from "./budgets.ts";
